"""Other libraries' implementations of the baselines, run on our nets and banks."""
