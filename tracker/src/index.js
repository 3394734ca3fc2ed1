// The ES module entry for bundlers: `import { track } from 'trackflow-tracker'`.
// Importing starts the tracker in the browser; during server-side rendering
// (no window) it does nothing and `track` is a no-op.
import start from './tracker.js';

const w = typeof window == 'object' && window;
if (w) start(w, document);

/** Queue a TrackFlow command, exactly as the page snippet's `track()` does. */
export function track() {
  if (w) w.dataLayer.push(arguments);
}

export default track;
