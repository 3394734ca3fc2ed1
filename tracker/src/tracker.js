/*
 * TrackFlow tracker. The page's `track(...)` pushes onto window.dataLayer; this
 * replays that queue in order once it loads, then handles every later push at
 * once, after whatever else wraps dataLayer (GA, GTM), whose commands it ignores.
 *
 * Delivery: events are batched and sent as text/plain JSON with fetch keepalive
 * (no CORS preflight), retried with backoff, and kept until the server answered
 * in a localStorage queue that belongs to this tab. When the page is hidden,
 * what is due goes out with sendBeacon in chunks the server and the browser
 * accept. A queue its tab left behind (closed, or silent for 10 minutes) is
 * adopted by the next page of the site. The server keeps an event once per
 * event_id, so a resend after an answer that never arrived is harmless.
 *
 * Build-time flags (build.mjs) add the extras; off, esbuild drops their code:
 * CONFIG (remote config, sampling), HASH (hash routing), LINKS (outbound links,
 * file downloads), TAGGED (data-track-* attributes), ENGAGEMENT (engaged time,
 * scroll depth). It never throws into the page.
 */
export default (w, d) => {
  let nav = navigator;
  let loc = location;
  let stringify = JSON.stringify;
  let script = d.currentScript;
  let dl = (w.dataLayer = w.dataLayer || []);
  if (dl.tf) return; // loaded twice
  dl.tf = 1;

  const SESSION_IDLE = 18e5; // 30 minutes
  const GRACE = 15e3; // a batch sent this recently may still arrive: don't resend it yet
  const STALE = 6e5; // a stored queue nobody wrote for 10 minutes belongs to a tab that is gone
  const MAX_QUEUE = 500; // events kept per tab, the oldest dropped first
  const BATCH = 20; // events per request (the server takes up to 100)
  const BATCH_BYTES = 3e4; // keepalive requests and beacons share 64 kB in flight
  const GIVE_UP = 12; // failed sends in a row (about 8 minutes) before waiting for `online` or a new event

  let key, opts, endpoint, session, userId, timer, lastPage, remote, engage, mine, gone, told;
  let failures = 0;
  let healthy = 1; // the last send worked: a beacon the browser accepted can be trusted
  let queue = [];
  let early = []; // events tracked before 'config' (with CONFIG, before the remote config)
  let errors = 0;
  let tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  let tab = 'tf_q' + Math.random(); // this tab's stored queue

  function warn(what) {
    try {
      console.warn('trackflow: ignored', what);
    } catch (e) {}
  }

  // localStorage, or where the browser refuses it, memory.
  let ls = {};
  try {
    ls = localStorage;
  } catch (e) {}

  // Write (value) or remove (no value) an item; false when the browser refused it (full).
  function store(name, value) {
    try {
      value ? (ls[name] = value) : delete ls[name];
      return 1;
    } catch (e) {}
  }

  function json(text) {
    try {
      return JSON.parse(text);
    } catch (e) {}
  }

  function uuid() {
    return ([1e7] + -1e3 + -4e3 + -8e3 + -1e11).replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)
    );
  }

  let anonymousId = ls.tf_aid || uuid();
  store('tf_aid', anonymousId);

  // Stamped with the time, so other pages know this tab is alive; once the
  // page is gone (pagehide) the stamp stays 0, which hands it to the next page,
  // whatever a later visibilitychange's beacon saves.
  function save() {
    queue = queue.slice(-MAX_QUEUE);
    mine = store(tab, queue[0] && stringify({ t: gone ? 0 : Date.now(), q: queue })) && queue[0];
  }

  // Another page adopted this tab's queue (left or stale), and sends it.
  function sync() {
    if (mine && !ls[tab]) queue = [];
  }

  // Take over the queues whose tab is gone (and the one-key queue of older
  // versions). Two pages starting at the same moment could both take one: the
  // server keeps each event_id once.
  function adopt() {
    try {
      for (let name of Object.keys(ls)) {
        let left = !name.indexOf('tf_q') && name != tab && json(ls[name]);
        if (left && !(Date.now() - left.t < STALE)) {
          store(name);
          for (let item of left.q || left) queue.push(item.e || item); // older versions: [{e: event}]
          healthy = 0;
          save();
        }
      }
    } catch (e) {}
    schedule(0);
  }

  // A new session after 30 minutes idle. Its landing event carries the
  // referrer and the campaign (in the URL); the server gives them to the session.
  function touch(now) {
    if (!session || now - session.t > SESSION_IDLE) session = { i: uuid() };
    session.t = now;
    store('tf_s', stringify(session));
  }

  // Why this page sends nothing (or the server keeps nothing), said once on the console.
  function say(why) {
    if (!told) told = console.info('trackflow: off,', why) || 1;
  }

  // Sampling says nothing.
  function disabled() {
    let why = ls.tf_out
      ? 'optOut'
      : session?.off // the server refused the key in this session
        ? 'key refused'
        : nav.webdriver && !opts.trackWebdriver
          ? 'webdriver (trackWebdriver: true)'
          : CONFIG && remote.enabled === false && 'disabled';
    why && say(why);
    return why || (CONFIG && parseInt(session?.i.slice(0, 8), 16) / 4294967296 >= (remote.sampleRate ?? 1));
  }

  // The URL a page is counted at: without hash routing the #fragment is only an anchor.
  function href() {
    return HASH ? loc.href : loc.href.split('#')[0];
  }

  function record(type, props) {
    try {
      if (!key || (CONFIG && !remote)) return early.push([type, props]);
      let now = Date.now();
      touch(now);
      if (disabled()) return;
      let context = {
        url: ((type == 'pageView' || (ENGAGEMENT && type == 'engagement')) && props?.url) || href(),
        referrer: d.referrer,
        title: d.title,
        screen: screen.width + 'x' + screen.height,
        language: nav.language,
        timezone: tz,
        anonymous_id: anonymousId,
        session_id: session.i,
        environment: opts.environment || (CONFIG && remote.environment) || 'development',
        sdk_version: VERSION,
        user_id: userId || undefined
      };
      sync();
      // `f`, when the event was last sent, rides along; the server ignores it.
      queue.push({ event_id: uuid(), type: type, ts: now, props: props || {}, context: context });
      save();
      schedule(queue[BATCH - 1] ? 0 : 1e3);
    } catch (e) {
      warn(e);
    }
  }

  function schedule(delay) {
    timer = timer || setTimeout(flush, delay);
  }

  // Send the next batch of what is due (not sent in the last GRACE ms) within
  // the count and byte limits. With `beacon` the page is going away: send it all
  // with sendBeacon; what the browser refuses stays stored for the next page.
  function flush(beacon) {
    timer = 0;
    if ((CONFIG && !remote) || disabled()) return;
    sync();
    let now = Date.now();
    let wait = 0;
    let size = 0;
    let batch = [];
    for (let item of queue)
      if (now - item.f < GRACE) wait = wait || item.f + GRACE - now;
      else if ((!batch[BATCH - 1] && (size += stringify(item).length) < BATCH_BYTES) || !batch[0]) batch.push(item);
    if (!batch[0]) return beacon || (wait && schedule(wait));
    let url = endpoint + '/v1/collect';
    let body = stringify({ api_key: key, sent_at: now, events: batch });
    let done = () => {
      queue = queue.filter((item) => !batch.includes(item));
      save();
    };
    let mark = (time) => {
      for (let item of batch) item.f = time;
      save();
    };
    if (beacon) {
      // Accepted by the browser, it is on its way once the network worked;
      // after failures it is kept, to send again from the next page.
      if (nav.sendBeacon(url, body)) healthy ? done() : mark(now), flush(1);
      return;
    }
    mark(now);
    let retry = () => {
      healthy = 0;
      mark();
      if (++failures < GIVE_UP) schedule(Math.min(6e4, 500 * 2 ** failures) * (0.5 + Math.random()));
    };
    fetch(url, { method: 'POST', body: body, keepalive: true })
      .then((response) => {
        let status = response.status;
        if (status > 499 || status == 429) return retry();
        // 2xx: stored, or dropped by the project's policy (Sec-GPC, bots), which
        // the answer names. 4xx: it never will be, so stop sending it; 401/403:
        // the key is unknown or its project disabled, so stop for the session.
        status == 202 && response.json().then((answer) => answer.dropped && say(answer.dropped.reason), Object); // Object: ignore a body that is not JSON
        if (status == 401 || status == 403) {
          touch(now);
          session.off = 1;
          store('tf_s', stringify(session));
        }
        healthy = 1;
        failures = 0;
        done();
        if (queue[0]) schedule(0);
      }, retry);
  }

  function page(force, here) {
    here = here || href();
    if (opts.autoTrackPageViews && (here != lastPage || force)) {
      if (ENGAGEMENT && lastPage) engage(1, lastPage);
      lastPage = here;
      record('pageView', { title: d.title, url: here });
    }
  }

  // After an SPA navigation the framework sets the new title a moment later:
  // take the URL now and the title then.
  function later() {
    let here = href();
    setTimeout(() => page(0, here), 100);
  }

  function onError(message, source, line, col, stack) {
    if (message && opts.autoTrackErrors && errors++ < 20)
      record('error', {
        message: ('' + message).slice(0, 500),
        source: source,
        line: line,
        col: col,
        stack: ('' + (stack || '')).slice(0, 2e3)
      });
  }

  function listen(target, name, handler, options) {
    target.addEventListener(name, handler, options);
  }

  function hidden() {
    if (ENGAGEMENT) engage();
    flush(1);
  }

  function configure(apiKey, options) {
    opts = { autoTrackPageViews: true, autoTrackClicks: true, autoTrackErrors: true, ...options };
    endpoint = (opts.endpoint || script?.dataset.endpoint || ENDPOINT).replace(/\/+$/, '');
    key = apiKey;
    session = json(ls.tf_s);
    userId = ls.tf_uid;

    if (CONFIG) {
      // Once per session (a failed fetch too): the server may switch tracking
      // or autotracking off, never on against the page's wishes.
      let apply = (config) => {
        remote = config || {};
        try {
          sessionStorage.tf_rc = stringify(remote);
        } catch (e) {}
        for (let k in remote) if (!k.indexOf('autoTrack') && remote[k] === false) opts[k] = false;
        ready();
      };
      let cached;
      try {
        cached = json(sessionStorage.tf_rc);
      } catch (e) {}
      if (cached) apply(cached);
      else
        fetch(endpoint + '/v1/config/' + encodeURIComponent(key))
          .then((response) => response.ok && response.json())
          .then(apply, () => apply());
    }

    if (ENGAGEMENT) {
      // How long the page was visible and how far down it was read, sent when
      // the page is hidden or left.
      let shown = Date.now();
      let engaged = 0;
      let depth = 0;
      let scrolled = () => {
        let height = d.documentElement.scrollHeight;
        depth = Math.max(depth, Math.min(100, Math.round(((scrollY + innerHeight) / height) * 100)) || 0);
      };
      engage = (next, url) => {
        let now = Date.now();
        if (shown) engaged += now - shown;
        shown = d.visibilityState == 'visible' && now;
        if (engaged) record('engagement', { engaged_ms: engaged, scroll_depth: depth, url: url });
        engaged = 0;
        if (next) depth = 0;
        setTimeout(scrolled);
      };
      scrolled();
      listen(w, 'scroll', scrolled, { passive: true });
      listen(d, 'visibilitychange', () => {
        if (d.visibilityState == 'visible') shown = Date.now();
      });
    }

    // Listeners go in whatever the options say: each checks its option when it
    // fires, so the remote config can still switch autotracking off.
    page();
    for (let method of ['pushState', 'replaceState']) {
      let original = history[method];
      history[method] = function () {
        let result = original.apply(this, arguments);
        later();
        return result;
      };
    }
    listen(w, 'popstate', later);
    if (HASH) listen(w, 'hashchange', later);
    listen(w, 'pageshow', (event) => {
      // Back from the back-forward cache: the queue is ours again unless a page adopted it.
      if (event.persisted) (gone = 0), sync(), save(), page(1);
    });
    listen(
      d,
      'click',
      (event) => {
        let target = event.target;
        let el = target.closest?.('a,button,[data-track],[type=submit],[type=button]');
        if (opts.autoTrackClicks && el)
          record('click', {
            tag: el.tagName,
            id: el.id || null,
            text: (el.textContent || el.value || '').trim().slice(0, 100),
            href: el.href,
            track: el.dataset.track
          });
        if (LINKS) {
          let a = target.closest?.('a[href]');
          if (a && /^http/.test(a.protocol))
            if (a.host != loc.host) record('outbound', { url: a.href });
            else if (
              a.hasAttribute('download') ||
              /\.(pdf|zip|gz|tgz|rar|7z|dmg|exe|msi|pkg|deb|rpm|apk|iso|csv|xlsx?|docx?|pptx?|txt|epub|mp3|mp4|mov|avi|wav)$/i.test(a.pathname)
            )
              record('download', { url: a.href });
        }
        if (TAGGED) {
          // <button data-track-event="signup" data-track-plan="pro"> sends the
          // event `signup` with {plan: 'pro'}.
          let tagged = target.closest?.('[data-track-event]');
          if (tagged) {
            let data = tagged.dataset;
            let props = {};
            for (let k in data)
              if (k.length > 5 && !k.indexOf('track') && k != 'trackEvent') props[k[5].toLowerCase() + k.slice(6)] = data[k];
            record(data.trackEvent, props);
          }
        }
      },
      true
    );
    listen(w, 'error', (event) => onError(event.message, event.filename, event.lineno, event.colno, event.error?.stack));
    listen(w, 'unhandledrejection', (event) => {
      let reason = event.reason || {};
      onError(reason.message || '' + event.reason, event.type, 0, 0, reason.stack);
    });
    listen(w, 'pagehide', () => {
      hidden();
      gone = 1;
      save(); // what is left goes to the next page of this site
    });
    listen(d, 'visibilitychange', () => d.hidden && hidden());
    listen(w, 'online', () => {
      // Back online: send now, not when the backoff would have.
      clearTimeout(timer);
      timer = failures = 0;
      adopt();
    });
    if (!CONFIG) ready();
  }

  // Send what was tracked before, and what earlier pages left.
  function ready() {
    early.splice(0).forEach((args) => record(...args));
    adopt();
  }

  function handle(args) {
    try {
      let [command, value, options] = args;
      // gtag's commands (and its `config` of a Google tag id) are not ours.
      if (/^((js|event|set|get|consent) |config (G|GT|AW|DC|UA)-)/.test(command + ' ' + value)) return;
      if (command == 'config' && value && typeof value == 'string' && !key) configure(value, options);
      else if (command == 'identify') store('tf_uid', (userId = value == null ? '' : '' + value));
      else if (command == 'optOut') store('tf_out', 1), (queue = []), save();
      else if (command == 'optIn') store('tf_out');
      else if (typeof command == 'string' && command != 'config' && (value == null || (typeof value == 'object' && !Array.isArray(value))))
        record(command, value);
      else warn(args);
    } catch (e) {
      // Not iterable: a plain object, as GTM and others push onto dataLayer.
    }
  }

  // Whatever push was there (Array's, or GA's or GTM's wrapper) still runs first.
  let pushed = dl.slice();
  let push = dl.push;
  dl.push = function () {
    let result = push.apply(dl, arguments);
    for (let args of arguments) handle(args);
    return result;
  };
  pushed.forEach(handle);
};
