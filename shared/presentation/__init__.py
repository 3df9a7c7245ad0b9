"""How the history is shown: JSON and CSV answers, continuation tokens, terminal tables, the HTML
report and its chart. Pure: no I/O, no clock (callers pass the time)."""
