// TrackFlow dashboard: reads /v1/stats/* and draws it. Every value from events
// (URLs, titles, messages) reaches the page through textContent, never as HTML.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const API = (params.get('api') || document.querySelector('meta[name="trackflow-api"]').content || '').replace(/\/$/, '');
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
const REFRESH_MS = 15000;
const LIVE_MS = 5000;
// Fewer sessions than this in the previous period make a percentage meaningless ("+50283%").
const THIN_PREVIOUS = 10;
let projects = [];
let chart;
let empty = true; // the figures show nothing yet: the first event refreshes them at once, not in 15 s
// `bots` as the viewer chose it (the URL or the checkbox); unset, the API's default for the project.
let bots = params.get('bots');
// The goal the breakdowns convert for ('' none) and the saved funnel shown, as the viewer chose them.
let goal = params.get('goal') || '';
let funnelId = params.get('funnel') || '';

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

const fmt = (n) => (typeof n === 'number' ? n.toLocaleString() : String(n));
const tokenKey = (id) => `trackflow.token.${id}`;

function current() {
  return projects.find((p) => p.project_id === $('project').value) || projects[0];
}

async function get(path, extra = {}) {
  const project = current();
  const query = new URLSearchParams({ project: project.project_id, tz: TZ, ...(bots ? { bots } : {}), ...extra });
  const headers = {};
  const token = localStorage.getItem(tokenKey(project.project_id));
  if (project.needs_token && token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`${API}${path}?${query}`, { headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

function table(id, columns, rows, empty = 'Nothing yet') {
  const target = $(id);
  target.replaceChildren();
  const head = el('tr');
  for (const [label, , numeric] of columns) head.append(el('th', label, numeric ? 'n' : ''));
  target.append(head);
  if (!rows.length) {
    const tr = el('tr');
    const td = el('td', empty, 'empty');
    td.colSpan = columns.length;
    tr.append(td);
    target.append(tr);
  }
  for (const row of rows) {
    const tr = el('tr');
    for (const [, pick, numeric] of columns) {
      const value = pick(row);
      const td = el('td', undefined, numeric ? 'n' : '');
      if (value instanceof Node) td.append(value);
      else td.textContent = numeric ? fmt(value) : value;
      tr.append(td);
    }
    target.append(tr);
  }
}

const CARDS = [
  ['visitors', 'Visitors', fmt],
  ['sessions', 'Sessions', fmt],
  ['pageviews', 'Page views', fmt],
  ['bounce_rate', 'Bounce rate', (v) => `${v}%`],
  ['avg_session_s', 'Avg. session', (v) => (v >= 60 ? `${Math.floor(v / 60)}m ${Math.round(v % 60)}s` : `${v}s`)],
];

function cards(metrics) {
  const box = $('cards');
  box.replaceChildren();
  const before = metrics.sessions.previous;
  for (const [key, label, show] of CARDS) {
    const { value, previous } = metrics[key];
    const card = el('div', undefined, 'card');
    const number = el('div', show(value), 'value');
    number.dataset.metric = key;
    card.append(el('div', label, 'label'), number);
    if (before < THIN_PREVIOUS) {
      if (value) card.append(el('div', before ? `new (${fmt(before)} sessions before)` : 'new', 'change new'));
    } else if (previous) {
      const change = Math.round(((value - previous) / previous) * 100);
      const better = key === 'bounce_rate' ? change <= 0 : change >= 0;
      card.append(el('div', `${change >= 0 ? '+' : ''}${change}% vs previous`, `change ${better ? 'up' : 'down'}`));
    }
    box.append(card);
  }
}

// Daily points get one tick per day (at most about ten), labelled with the date only.
function timeAxis(series, xs) {
  if (series.interval !== 'day') return {};
  const every = Math.ceil(xs.length / 10);
  const day = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: series.period.tz });
  return {
    splits: () => xs.filter((_, i) => i % every === 0),
    values: (_, ticks) => ticks.map((t) => day.format(new Date(t * 1000))),
  };
}

function draw(series) {
  const xs = series.points.map((p) => Date.parse(p.time) / 1000);
  const data = [xs, series.points.map((p) => p.pageviews), series.points.map((p) => p.visitors)];
  const width = Math.max(300, $('chart').clientWidth || 800);
  if (chart) chart.destroy();
  chart = new uPlot(
    {
      width,
      height: 220,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), series.period.tz),
      legend: { live: false }, // the series' names, not "--" until the cursor is on the chart
      series: [{}, { label: 'Page views', stroke: '#3366cc', fill: '#3366cc22' }, { label: 'Visitors', stroke: '#dc7a1f' }],
      axes: [timeAxis(series, xs), { size: 50 }],
    },
    data,
    $('chart'),
  );
}

// [breakdown, column title, what an empty value means]; pages first (asked on its own)
const BREAKDOWNS = [
  ['pages', 'Page', '(none)'],
  ['entry_pages', 'Entry page', '(no page view)'],
  ['exit_pages', 'Exit page', '(no page view)'],
  ['referrers', 'Referrer', '(direct / none)'],
  ['utm_sources', 'utm_source', '(none)'],
  ['devices', 'Device', '(unknown)'],
  ['browsers', 'Browser', '(unknown)'],
  ['os', 'Operating system', '(unknown)'],
  ['countries', 'Country', '(unknown)'],
];

// The project's goals: converted visitors, conversions and the rate, against the period before.
function goalsTable(body) {
  table(
    'goals',
    [
      ['Goal', (g) => g.name],
      ['Converted', (g) => g.visitors, true],
      ['Rate', (g) => `${g.conversion_rate}%`, true],
      ['Before', (g) => `${g.previous.conversion_rate}%`, true],
    ],
    body.goals,
    'No goals yet: trackflow goals add PROJECT "Signup" --event signup',
  );
  const select = $('goal');
  select.replaceChildren(el('option', 'All visitors'));
  select.options[0].value = '';
  for (const g of body.goals) {
    const option = el('option', g.name);
    option.value = g.id;
    select.append(option);
  }
  if (!body.goals.some((g) => g.id === goal)) goal = '';
  select.value = goal;
  const saved = $('funnel');
  saved.replaceChildren(...body.funnels.map((f) => Object.assign(el('option', f.name), { value: f.id })));
  if (!body.funnels.some((f) => f.id === funnelId)) funnelId = body.funnels.length ? body.funnels[0].id : '';
  saved.value = funnelId;
  saved.hidden = !body.funnels.length;
}

// One bar per step, as wide as its share of the first step, with who dropped and how long it took.
function funnelChart(body) {
  const box = $('funnel-chart');
  if (!body) {
    box.replaceChildren(el('p', 'No saved funnel yet: trackflow funnels add PROJECT "Signup" --step / --step signup', 'empty'));
    return;
  }
  const first = body.steps[0].visitors || 1;
  box.replaceChildren(
    ...body.steps.map((s) => {
      const row = el('div', undefined, 'step');
      const head = el('div', undefined, 'head');
      const took = s.median_s_from_previous === null ? '' : ` · median ${s.median_s_from_previous}s`;
      head.append(el('span', `${s.step}. ${s.label}`), el('span', `${fmt(s.visitors)} · ${s.conversion_from_first}%${took}`));
      const bar = el('div', undefined, 'bar');
      const fill = el('div', undefined, 'fill');
      fill.style.width = `${(100 * s.visitors) / first}%`;
      bar.append(fill);
      row.append(head, bar);
      if (s.step > 1 && s.dropped) row.append(el('div', `−${fmt(s.dropped)} (${(100 - s.conversion_from_previous).toFixed(1)}% dropped)`, 'drop'));
      return row;
    }),
  );
}

function clickedElement(row) {
  const what = `${row.tag.toLowerCase()}${row.element_id ? `#${row.element_id}` : ''}`;
  return row.text ? `${what} “${row.text}”` : row.href || what;
}

function choice() {
  const chosen = $('period').value;
  return chosen === 'custom' ? { from: $('from').value, to: $('to').value } : { period: chosen };
}

// What the viewer looks at goes in the address, so a reload or a shared link shows the same.
function remember() {
  const state = new URLSearchParams(location.search);
  for (const name of ['project', 'period', 'from', 'to', 'bots', 'goal', 'funnel']) state.delete(name);
  state.set('project', current().project_id);
  for (const [name, value] of Object.entries(choice())) state.set(name, value);
  if (bots) state.set('bots', bots);
  if (goal) state.set('goal', goal);
  if (funnelId) state.set('funnel', funnelId);
  history.replaceState(null, '', `?${state}`);
}

let refreshes = 0; // only the newest refresh draws: an older one still running answers for an old choice

async function refresh() {
  const period = choice();
  const mine = ++refreshes;
  const converting = goal ? { goal } : {};
  remember();
  try {
    const [goals, overview, series, errors, custom, clicks, funnel, pages, sessions] = await Promise.all([
      get('/v1/stats/goals', period),
      get('/v1/stats/overview', period),
      get('/v1/stats/timeseries', period),
      get('/v1/stats/errors', period),
      get('/v1/stats/events', period),
      get('/v1/stats/clicks', period),
      // The chosen saved funnel, or the project's first; none saved is a 404: no chart.
      get('/v1/stats/funnel', { ...period, ...(funnelId ? { funnel: funnelId } : {}) }).catch(() => null),
      // Pages on their own, the session breakdowns in one request: their sessions are read once for all.
      get('/v1/stats/breakdown/pages', { ...period, ...converting }),
      get('/v1/stats/breakdowns', { ...period, ...converting, dimensions: BREAKDOWNS.slice(1).map(([name]) => name).join(',') }),
    ]);
    if (mine !== refreshes) return;
    goalsTable(goals);
    funnelChart(funnel);
    $('bots').checked = overview.period.bots === 'include';
    empty = !overview.metrics.pageviews.value && !overview.metrics.sessions.value;
    cards(overview.metrics);
    draw(series);
    const figures = converting.goal
      ? [['Visitors', (r) => r.visitors, true], ['Converted', (r) => r.converted_visitors, true], ['Rate', (r) => `${r.conversion_rate}%`, true]]
      : [['Visitors', (r) => r.visitors, true], ['Views', (r) => r.pageviews, true]];
    const breakdowns = [pages, ...sessions.breakdowns];
    BREAKDOWNS.forEach(([name, title, blank], i) => table(name, [[title, (r) => r.value || blank], ...figures], breakdowns[i].rows));
    table('events', [['Event', (r) => r.name], ['Count', (r) => r.count, true], ['Visitors', (r) => r.visitors, true]], custom.rows);
    table('clicks', [['Element', clickedElement], ['Clicks', (r) => r.count, true], ['Visitors', (r) => r.visitors, true]], clicks.rows);
    table(
      'errors',
      [
        ['Error', (r) => {
          const box = el('div', r.message);
          box.append(el('pre', `${r.source}\n${r.sample_stack}`));
          return box;
        }],
        ['Count', (r) => r.count, true],
        ['Sessions', (r) => r.sessions, true],
        ['Last seen', (r) => new Date(r.last_seen).toLocaleString()],
      ],
      errors.rows,
      'No errors',
    );
    $('status').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $('status').textContent = `Could not load: ${err.message}`;
  }
}

async function live() {
  try {
    const now = await get('/v1/stats/realtime', { limit: '15' });
    $('live-visitors').textContent = fmt(now.visitors);
    $('live-pageviews').textContent = fmt(now.pageviews);
    $('live-error').textContent = '';
    if (empty && now.latest.length) refresh();
    $('live-events').replaceChildren(
      ...now.latest.map((e) => el('li', `${new Date(e.at_ms).toLocaleTimeString()}  ${e.type}  ${e.url_path}  ${e.title || ''}  ${e.country || ''}`)),
    );
  } catch (err) {
    $('live-error').textContent = `Could not load: ${err.message}`;
  }
}

function showToken() {
  const project = current();
  $('token-label').hidden = !project.needs_token;
  $('token').value = localStorage.getItem(tokenKey(project.project_id)) || '';
}

async function start() {
  try {
    const response = await fetch(`${API}/v1/stats/projects`);
    projects = (await response.json()).projects || [];
  } catch (err) {
    $('status').textContent = `Cannot reach the API at ${API || location.origin}: ${err.message}`;
    return;
  }
  for (const p of projects) {
    const option = el('option', p.name);
    option.value = p.project_id;
    $('project').append(option);
  }
  $('project').value = params.get('project') || projects[0].project_id;
  const period = params.get('from') && params.get('to') ? 'custom' : params.get('period');
  if (period && [...$('period').options].some((o) => o.value === period)) $('period').value = period;
  if (period === 'custom') {
    $('from').value = params.get('from');
    $('to').value = params.get('to');
    $('range').hidden = false;
  }
  showToken();
  $('project').addEventListener('change', () => {
    bots = null; // each project has its own default
    goal = '';
    funnelId = '';
    showToken();
    refresh();
    live();
  });
  $('goal').addEventListener('change', () => {
    goal = $('goal').value;
    refresh();
  });
  $('funnel').addEventListener('change', () => {
    funnelId = $('funnel').value;
    refresh();
  });
  $('bots').addEventListener('change', () => {
    bots = $('bots').checked ? 'include' : 'exclude';
    refresh();
    live();
  });
  $('period').addEventListener('change', () => {
    const custom = $('period').value === 'custom';
    $('range').hidden = !custom;
    if (custom && !$('from').value) {
      const day = (offset) => new Date(Date.now() - offset * 864e5).toLocaleDateString('sv'); // YYYY-MM-DD, local
      $('from').value = day(6);
      $('to').value = day(0);
    }
    refresh();
  });
  $('from').addEventListener('change', refresh);
  $('to').addEventListener('change', refresh);
  $('token').addEventListener('change', () => {
    localStorage.setItem(tokenKey(current().project_id), $('token').value.trim());
    refresh();
    live();
  });
  await Promise.all([refresh(), live()]);
  setInterval(refresh, REFRESH_MS);
  setInterval(live, LIVE_MS);
}

start();
