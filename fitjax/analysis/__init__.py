"""What is made of runs: loss landscapes, critical points, basins, sweep rankings and figures.

- ``landscape``: loss over lines, planes and grids; critical points;
- ``basins``: which minimum each start reaches;
- ``sweep_report``: the measures ``fitjax sweep`` ranks settings by;
- ``plots``: the figures (matplotlib, imported only when drawn).
"""
