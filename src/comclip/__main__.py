from .cli import module_main

module_main()
