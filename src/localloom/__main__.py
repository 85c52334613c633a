from localloom.cli import main

main()
