# Entry point on the board: run the dial until Ctrl-C (which returns to the REPL).
from dial import app

app.main()
