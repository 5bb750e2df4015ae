"""Diamond-5 on peer engines (DBOS, Temporal), run from bench/.peers-venv/ when it exists."""
