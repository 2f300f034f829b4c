from ratedial.cli import main

main()
