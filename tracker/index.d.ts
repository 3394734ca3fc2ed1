// Types for the page-side API of TrackFlow's tracker.js.
// The page defines `track` itself (the seed snippet); these describe what it accepts.

export interface TrackFlowOptions {
  /** Send a page view on load and on every SPA navigation. Default true. */
  autoTrackPageViews?: boolean;
  /** Send a click for links, buttons and [data-track] elements. Default true. */
  autoTrackClicks?: boolean;
  /** Send uncaught errors and unhandled promise rejections. Default true. */
  autoTrackErrors?: boolean;
  /** Stamped on every event. Default 'development'. */
  environment?: string;
  /** Where events go (the collect function's base URL). Default: the script's data-endpoint, else the build's TRACKFLOW_ENDPOINT. */
  endpoint?: string;
  /** Count `#hash` changes as page views. Default false. */
  hashRouting?: boolean;
  /** Send nothing when the browser says Do Not Track or Global Privacy Control. Default false. */
  respectDnt?: boolean;
  /** Also track automated browsers (navigator.webdriver). Default false. */
  trackWebdriver?: boolean;
}

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
