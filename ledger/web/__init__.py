"""The web application (`yikatong serve`): an entry point beside the CLI, on the same use cases
(ledger.service) and the same accounts and roles (ledger.accounts, ledger.roles). See app.py."""
