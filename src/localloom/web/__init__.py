"""The web UI's static files (index.html, app.js, style.css), read with importlib.resources."""
