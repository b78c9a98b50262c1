"""Views of answers and cables: HTML for the web faces, text for the terminal."""
