"""The static leaderboard site, built from the results database only."""
