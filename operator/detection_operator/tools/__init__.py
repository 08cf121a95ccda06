"""The GitOps commands: validate, backtest, explain."""
