from . import module_main

module_main()
