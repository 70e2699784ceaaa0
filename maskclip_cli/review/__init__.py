"""Looking at labels: overlays of photo and label map, and the HTML review report."""
