// The script tag's entry: start at once on the page that loads it.
import start from './tracker.js';

start(window, document);
