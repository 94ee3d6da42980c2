from .device.cli import module_main

module_main()
