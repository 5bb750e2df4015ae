"""What the server tells its operator: structured logs (`logs` sets them up; `run_log` says what
happened to each run)."""
