from ig_burn.app import main

main()
