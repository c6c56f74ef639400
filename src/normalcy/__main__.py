from normalcy.cli.main import main

main()
