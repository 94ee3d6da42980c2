from .device_cli import module_main

module_main()
