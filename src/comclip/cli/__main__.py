from comclip.cli import module_main

module_main()
