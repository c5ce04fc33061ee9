from comclip._interrupt import watch_interrupts

watch_interrupts()  # before the command's imports: a Ctrl-C among them is still exit 130

from comclip.cli import module_main  # noqa: E402

module_main()
