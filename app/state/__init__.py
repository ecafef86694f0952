"""The one place that writes a status (DESIGN.md rule 1): `tasks` for tasks, `dispatches` for hand-overs
to designers. Both move a row with the compare-and-set of `cas`; whoever's update hits has won."""
