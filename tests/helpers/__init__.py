"""What several test modules share: file makers, runners, the test SLURM cluster."""
