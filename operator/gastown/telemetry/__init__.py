"""What gastown tells the outside about itself: Prometheus metrics."""
