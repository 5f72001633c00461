"""The score stage: every metric of a run as a pure function of its predictions, the frozen
manifest and the board (`score.score_predictions`), with the tasks' evaluations, intervals,
calibration, uncertainty, robustness, localization and paired tests."""
