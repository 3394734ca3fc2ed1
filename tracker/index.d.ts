// Types for TrackFlow's tracker: the page-side `track()` of the script tag (the
// seed snippet defines it), and the ES module's `track` for bundlers:
//   import { track } from 'trackflow-tracker';        // the core
//   import { track } from 'trackflow-tracker/full';   // with every extra

export interface TrackFlowOptions {
  /** Send a page view on load and on every SPA navigation. Default true. */
  autoTrackPageViews?: boolean;
  /** Send a click for links, buttons and [data-track] elements. Default true. */
  autoTrackClicks?: boolean;
  /** Send uncaught errors and unhandled promise rejections. Default true. */
  autoTrackErrors?: boolean;
  /** Stamped on every event. Default: the project's environment with tracker.config.js, else 'development'. */
  environment?: string;
  /** Where events go (the collect function's base URL). Default: the script's data-endpoint, else the build's TRACKFLOW_ENDPOINT. */
  endpoint?: string;
  /** Also track automated browsers (navigator.webdriver). Default false. */
  trackWebdriver?: boolean;
}

/** `url` is the URL the page view is counted at (default: the current one). */
export interface PageViewProps { title?: string; url?: string; [key: string]: unknown }
export interface ClickProps { tag?: string; id?: string | null; text?: string; [key: string]: unknown }
export interface ErrorProps { message?: string; source?: string; line?: number; col?: number; stack?: string; [key: string]: unknown }

export interface Track {
  (command: 'config', apiKey: string, options?: TrackFlowOptions): void;
  (command: 'pageView', props?: PageViewProps): void;
  (command: 'click', props?: ClickProps): void;
  (command: 'error', props?: ErrorProps): void;
  (command: 'identify', userId: string | null): void;
  (command: 'optOut' | 'optIn'): void;
  /** Any other name is a custom event. */
  (event: string, props?: Record<string, unknown>): void;
}

declare global {
  interface Window {
    dataLayer: unknown[];
    track?: Track;
  }
  // The seed snippet declares `function track()` at the top level of the page.
  var track: Track;
}

/** Queue a command, as the snippet's `track()` does; a no-op during server-side rendering. */
export declare const track: Track;
export default track;
