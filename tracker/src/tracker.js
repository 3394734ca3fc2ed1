/*
 * TrackFlow tracker: the page's `track(...)` pushes onto window.dataLayer; this
 * script replays that queue in order once it loads, then handles every later
 * push at once. Events are batched, sent as text/plain JSON with fetch
 * keepalive (no CORS preflight), flushed with sendBeacon when the page is
 * hidden, retried with backoff, and kept in a bounded localStorage queue until
 * the server took them, so nothing is lost across reloads or offline spells.
 * It never throws into the page.
 */
((w, d) => {
  let nav = navigator;
  let stringify = JSON.stringify;
  let loc = location;
  let script = d.currentScript;
  let dl = (w.dataLayer = w.dataLayer || []);
  if (dl.tf) return; // loaded twice
  dl.tf = 1;

  const SESSION_IDLE = 18e5; // 30 minutes
  const GRACE = 15e3; // a batch in flight this recently may still arrive: don't resend yet
  const MAX_QUEUE = 200;
  const MAX_QUEUE_BYTES = 6e4;
  const BATCH = 20;

  let key, opts, endpoint, session, userId, timer, lastPage, remote;
  let failures = 0;
  let TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;
  let early = []; // events tracked before 'config'
  let errorsSeen = {};
  let errorCount = 0;

  function warn(message) {
    try {
      console.warn('trackflow:', message);
    } catch (e) {}
  }

  function store(name, value, session) {
    try {
      let s = session ? w.sessionStorage : w.localStorage;
      if (value === undefined) return s.getItem(name);
      value === null ? s.removeItem(name) : s.setItem(name, value);
    } catch (e) {}
  }

  function json(text) {
    try {
      return JSON.parse(text);
    } catch (e) {}
  }

  function uuid() {
    return '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) => {
      return (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }

  let anonymousId = store('tf_aid') || uuid();
  store('tf_aid', anonymousId);
  let queue = json(store('tf_q')) || [];
  // Leftovers mean an earlier page could not send: don't trust a beacon until a send worked.
  let healthy = !queue.length;

  function saveQueue() {
    // The bound: drop the oldest.
    while (queue.length > MAX_QUEUE || stringify(queue).length > MAX_QUEUE_BYTES) queue.shift();
    store('tf_q', stringify(queue));
  }

  // Session: new after 30 minutes idle; keeps the landing referrer and UTM.
  function touchSession(now) {
    let params = new URLSearchParams(loc.search);
    let ref = d.referrer;
    let external = ref && ref.split('/')[2] !== loc.host;
    if (!session || now - session.t > SESSION_IDLE) {
      session = { i: uuid(), r: external ? ref : '', u: {} };
    } else if (external) {
      session.r = ref;
    }
    for (let [name, value] of params) if (!name.indexOf('utm_') && value) session.u[name] = value;
    session.t = now;
    store('tf_s', stringify(session));
  }

  function disabled() {
    return (
      store('tf_out') ||
      remote?.enabled === false ||
      (opts.respectDnt && (nav.doNotTrack == 1 || nav.globalPrivacyControl)) ||
      (nav.webdriver && !opts.trackWebdriver) ||
      (session && parseInt(session.i.slice(0, 8), 16) / 4294967296 >= (remote?.sampleRate ?? 1))
    );
  }

  function record(type, props) {
    try {
      if (!key) early.push([type, props]);
      else if (!disabled()) enqueue(type, props);
    } catch (e) {
      warn(e);
    }
  }

  function enqueue(type, props) {
    let now = Date.now();
    touchSession(now);
    if (disabled()) return; // sampling decides per session
    let context = {
      url: loc.href,
      referrer: session.r,
      title: d.title,
      screen: screen.width + 'x' + screen.height,
      language: nav.language,
      timezone: TZ,
      anonymous_id: anonymousId,
      session_id: session.i,
      environment: opts.environment,
      sdk_version: VERSION
    };
    if (userId) context.user_id = userId;
    for (let k in session.u) context[k] = session.u[k];
    queue.push({ e: { event_id: uuid(), type: type, ts: now, props: props || {}, context: context } });
    saveQueue();
    schedule(queue.length >= BATCH ? 0 : 1000);
  }

  function schedule(delay) {
    if (!timer) timer = setTimeout(flush, delay);
  }

  function drop(batch) {
    queue = queue.filter((item) => {
      return batch.indexOf(item) < 0;
    });
    saveQueue();
  }

  // Send what is due: everything not sent in the last GRACE ms. With `beacon`
  // the page is going away: use sendBeacon.
  function flush(beacon) {
    timer = 0;
    if (!key || disabled()) return;
    let now = Date.now();
    let wait = 0;
    let batch = queue.filter((item) => {
      if (item.f && now - item.f < GRACE) {
        wait = wait || item.f + GRACE - now;
        return 0;
      }
      return 1;
    });
    if (!beacon) batch = batch.slice(0, BATCH);
    if (!batch.length) return beacon ? healthy && drop(queue) : wait && schedule(wait);
    let body = stringify({
      api_key: key,
      sent_at: now,
      events: batch.map((item) => {
        return item.e;
      })
    });
    // Any later copy of an event says so, and the server checks it was not stored already.
    for (let item of batch) (item.f = now), (item.e.resent = 1);
    let url = endpoint + '/v1/collect';
    if (beacon) {
      // In flight or beaconed, all of it is on its way once the network worked;
      // after failures keep it, to resend on the next page.
      if (nav.sendBeacon(url, body) && healthy) drop(queue);
      return;
    }
    saveQueue();
    fetch(url, { method: 'POST', body: body, keepalive: true })
      .then((response) => {
        let status = response.status;
        if (status < 500 && status != 429) {
          // 2xx: stored. 4xx: it will never be, so stop resending it.
          healthy = 1;
          failures = 0;
          drop(batch);
          if (queue.length) schedule(0);
        } else {
          retry(batch, response.headers.get('Retry-After'));
        }
      })
      .catch(() => {
        retry(batch);
      });
  }

  function retry(batch, after) {
    healthy = 0;
    for (let item of batch) item.f = 0;
    saveQueue();
    let delay = Math.min(6e4, 1e3 * 2 ** failures++) * (0.5 + Math.random());
    schedule(after > 0 ? after * 1e3 : delay);
  }

  function page(force) {
    if (!opts.autoTrackPageViews) return;
    let here = opts.hashRouting ? loc.href : loc.href.split('#')[0];
    if (here === lastPage && force !== 1) return;
    lastPage = here;
    record('pageView', { title: d.title, url: loc.href });
  }

  function hook(object, method) {
    let original = object[method];
    object[method] = function () {
      let result = original.apply(this, arguments);
      page();
      return result;
    };
  }

  function onError(props) {
    if (!opts.autoTrackErrors) return;
    let id = props.message + props.source + props.line;
    if (errorsSeen[id] || errorCount > 20) return;
    errorsSeen[id] = ++errorCount;
    props.message = ('' + props.message).slice(0, 500);
    props.stack = ('' + (props.stack || '')).slice(0, 2000);
    record('error', props);
  }

  function listen(target, name, handler, capture) {
    target.addEventListener(name, handler, capture);
  }

  function applyRemote(config) {
    remote = config;
    // The server may switch autotracking off, never on against the page's wishes.
    for (let k in config) if (!k.indexOf('autoTrack') && config[k] === false) opts[k] = false;
  }

  function configure(apiKey, options) {
    if (typeof apiKey != 'string' || !apiKey) return warn('bad key');
    if (key) return warn('config twice');
    opts = {
      autoTrackPageViews: true,
      autoTrackClicks: true,
      autoTrackErrors: true,
      environment: 'development'
    };
    for (let k in options) opts[k] = options[k];
    endpoint = (opts.endpoint || script?.dataset.endpoint || ENDPOINT).replace(/\/+$/, '');
    key = apiKey;
    session = json(store('tf_s'));
    userId = store('tf_uid');

    let cached = json(store('tf_rc', undefined, 1));
    if (cached) applyRemote(cached);
    else
      fetch(endpoint + '/v1/config/' + encodeURIComponent(key))
        .then((response) => {
          return response.ok && response.json();
        })
        .then((config) => {
          if (config) {
            store('tf_rc', stringify(config), 1);
            applyRemote(config);
          }
        })
        .catch(() => {});

    // Listeners go in whatever the options say: each checks its option when it
    // fires, so the remote config can still switch autotracking on or off.
    page();
    hook(history, 'pushState');
    hook(history, 'replaceState');
    listen(w, 'popstate', page);
    listen(w, 'hashchange', () => opts.hashRouting && page());
    listen(w, 'pageshow', (event) => event.persisted && page(1)); // back-forward cache restore
    listen(
      d,
      'click',
      (event) => {
        let el = event.target.closest?.('a,button,[data-track],[type=submit],[type=button]');
        if (opts.autoTrackClicks && el)
          record('click', {
            tag: el.tagName,
            id: el.id,
            text: (el.innerText || el.value || '').trim().slice(0, 100),
            href: el.href,
            track: el.dataset.track
          });
      },
      true
    );
    listen(w, 'error', (event) => {
      if (event.message)
        onError({
          message: event.message,
          source: event.filename,
          line: event.lineno,
          col: event.colno,
          stack: event.error?.stack
        });
    });
    listen(w, 'unhandledrejection', (event) => {
      let reason = event.reason || {};
      onError({ message: reason.message || '' + event.reason, source: event.type, stack: reason.stack });
    });
    listen(w, 'pagehide', () => {
      flush(1);
    });
    listen(d, 'visibilitychange', () => {
      if (d.visibilityState == 'hidden') flush(1);
    });
    early.splice(0).forEach((args) => record(...args));
    schedule(0); // what an earlier page left in the queue
  }

  function handle(args) {
    try {
      let command = args?.[0];
      if (command === 'config') configure(args[1], args[2]);
      else if (command === 'identify') {
        userId = args[1] == null ? null : '' + args[1];
        store('tf_uid', userId);
      } else if (command === 'optOut') {
        store('tf_out', '1');
        queue = [];
        saveQueue();
      } else if (command === 'optIn') store('tf_out', null);
      else if (typeof command == 'string' && command) {
        let props = args[1];
        if (props != null && (typeof props != 'object' || props instanceof Array))
          return warn('bad props ' + command);
        record(command, props);
      } else if (args?.length >= 0) warn('bad command'); // not plain objects: other tools share dataLayer
    } catch (e) {
      warn(e);
    }
  }

  let pushed = dl.slice();
  dl.push = function () {
    let result = Array.prototype.push.apply(dl, arguments);
    for (let i = 0; i < arguments.length; i++) handle(arguments[i]);
    return result;
  };
  pushed.forEach(handle);
})(window, document);
