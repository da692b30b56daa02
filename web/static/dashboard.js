// The KPI dashboard panel: a card per module with its KPIs (value, unit,
// change and a sparkline of their recent history) and the top movers.
//
// Three sources feed it. The dashboard subscription names the modules and
// the top movers; it is rate-limited by the server, so its values may lag.
// One kpiUpdated subscription per module card carries that module's values
// as they change. kpiHistory fills each sparkline, which then grows with
// every value that arrives live. Values are latest-value state: a KPI shows
// the one recorded last (by updatedAt), whichever stream brought it.
// Everything the server sends is shown with textContent or as SVG
// attributes, never parsed as HTML.
//
// A server that keeps its KPIs for signed-in users (KPI_PUBLIC=false)
// refuses the streams of an anonymous page with UNAUTHENTICATED: the panel
// then stops them, shows "Sign in to see the dashboard" and starts again
// when the session changes.

import { $, element, followStream, formatClock, insertSorted, sentence, showMessage, svgElement } from './ui.js';

const TOP_MOVERS = 5; // KPIs in the top movers list
const HISTORY_POINTS = 40; // samples per sparkline
const SPARK_WIDTH = 72; // the sparkline's viewBox: its size in CSS pixels (see .spark)
const SPARK_HEIGHT = 28;
const SPARK_PAD = 3; // room for the stroke and the end dot

const KPI_FIELDS = 'module key label value unit change relativeChange updatedAt';

const DASHBOARD_SUBSCRIPTION = `subscription Dashboard($topN: Int) {
  dashboard(topN: $topN) {
    modules { module updatedAt kpis { ${KPI_FIELDS} } }
    topMovers { ${KPI_FIELDS} }
    generatedAt
  }
}`;

const KPI_UPDATED_SUBSCRIPTION = `subscription KPIUpdated($module: String!) {
  kpiUpdated(module: $module) { module kpis { ${KPI_FIELDS} } }
}`;

const KPI_HISTORY_QUERY = `query KPIHistory($module: String!, $key: String!, $since: Time, $limit: Int) {
  kpiHistory(module: $module, key: $key, since: $since, limit: $limit) { value at }
}`;

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const changeFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2, signDisplay: 'exceptZero' });
const percentFormat = new Intl.NumberFormat(undefined, {
  style: 'percent',
  maximumFractionDigits: 1,
  signDisplay: 'exceptZero',
});

/** A value with its unit: "48,900 EUR", "38.4%". */
function formatValue(value, unit) {
  const number = numberFormat.format(value);
  if (!unit) return number;
  return unit === '%' || unit.startsWith('/') ? number + unit : `${number} ${unit}`;
}

/** How a KPI moved: its direction and a short text such as "▲ +900 (+1.9%)". */
function describeChange(kpi) {
  if (kpi.change == null) return { direction: 'new', text: 'new' };
  const direction = kpi.change > 0 ? 'up' : kpi.change < 0 ? 'down' : 'flat';
  const arrow = { up: '▲', down: '▼', flat: '▬' }[direction];
  const relative = kpi.relativeChange == null ? '' : ` (${percentFormat.format(kpi.relativeChange)})`;
  return { direction, text: `${arrow} ${changeFormat.format(kpi.change)}${relative}` };
}

/** Milliseconds since the epoch of an RFC 3339 time; -Infinity when unreadable. */
function timeOf(value) {
  const t = Date.parse(value);
  return Number.isFinite(t) ? t : -Infinity;
}

/**
 * Sets up the dashboard panel.
 *
 * @param {object} options
 * @param {object} options.client the page's client (see client.js)
 * @param {(modules: string[]) => void} [options.onModules] the modules shown
 *   changed (for the admin panel's suggestions)
 * @returns {{connectionChanged: (state: string) => void, sessionChanged: () => void,
 *   kpisRecorded: (kpis: object[]) => void}} connectionChanged is called on
 *   every connection state the client reports; kpisRecorded shows values the
 *   page itself recorded without waiting for the streams
 */
export function createDashboard({ client, onModules = () => {} }) {
  const el = {
    error: $('dashboard-error'),
    loading: $('dashboard-loading'),
    empty: $('dashboard-empty'),
    signIn: $('dashboard-signin'),
    cards: $('kpi-cards'),
    movers: $('top-movers'),
    moversTime: $('top-movers-time'),
  };

  /** Module name → card, for every module shown. Cards stay once shown: modules are never deleted. */
  const cards = new Map();
  let loaded = false;
  let locked = false; // the server refused the dashboard to this (anonymous) page
  let stopDashboard = () => {};

  // ---- Cards ----------------------------------------------------------------

  const byModule = (a, b) => (a.dataset.module < b.dataset.module ? -1 : a.dataset.module > b.dataset.module ? 1 : 0);
  const byKey = (a, b) => (a.dataset.key < b.dataset.key ? -1 : a.dataset.key > b.dataset.key ? 1 : 0);

  /** The card of a module, created (and followed live) on first use. */
  function cardFor(module) {
    let card = cards.get(module);
    if (card) return card;

    const section = element('section', 'kpi-card');
    section.dataset.module = module;
    const header = element('header', 'kpi-card-header');
    const updated = element('time', 'kpi-updated');
    header.append(element('h3', 'kpi-card-title', module), updated);
    const list = element('ul', 'kpi-list');
    section.append(header, list);

    card = { module, section, list, updated, updatedAt: -Infinity, rows: new Map(), stop: null };
    cards.set(module, card);
    insertSorted(el.cards, section, byModule);
    card.stop = followStream(client, KPI_UPDATED_SUBSCRIPTION, {
      variables: { module },
      next: (data) => {
        if (!data.kpiUpdated) return;
        for (const kpi of data.kpiUpdated.kpis) applyKPI(kpi, { live: true });
      },
      failed: lockedOut,
    });
    renderState();
    onModules([...cards.keys()].sort());
    return card;
  }

  /** A KPI's row in its card, created (with its history loading) on first use. */
  function rowFor(card, key) {
    let row = card.rows.get(key);
    if (row) return row;

    const li = element('li', 'kpi');
    li.dataset.key = key;
    const label = element('span', 'kpi-label');
    const spark = svgElement('svg', {
      class: 'spark',
      viewBox: `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`,
      preserveAspectRatio: 'none',
      'aria-hidden': 'true',
      'data-points': 0,
    });
    const value = element('span', 'kpi-value');
    const change = element('span', 'kpi-change');
    li.append(label, spark, value, change);
    row = { card, key, li, label, spark, value, change, kpi: null, samples: new Map(), historyLoaded: false, historyLoading: false };
    card.rows.set(key, row);
    insertSorted(card.list, li, byKey);
    loadHistory(row);
    return row;
  }

  /**
   * Shows a KPI's value unless a newer one is shown already (the dashboard
   * stream lags behind kpiUpdated), and adds it to the sparkline.
   */
  function applyKPI(kpi, { live = false } = {}) {
    const card = cardFor(kpi.module);
    const row = rowFor(card, kpi.key);
    const at = timeOf(kpi.updatedAt);
    addSamples(row, [{ value: kpi.value, at: kpi.updatedAt }]);
    if (row.kpi && at < timeOf(row.kpi.updatedAt)) return;
    const changed = row.kpi !== null && (row.kpi.value !== kpi.value || row.kpi.updatedAt !== kpi.updatedAt);
    row.kpi = kpi;
    renderRow(row);
    if (changed && live) pulse(row.value);
    if (at > card.updatedAt) {
      card.updatedAt = at;
      card.updated.dateTime = new Date(at).toISOString();
      card.updated.textContent = `updated ${formatClock(at)}`;
      card.updated.title = new Date(at).toString();
    }
  }

  function renderRow(row) {
    const { kpi } = row;
    row.label.textContent = kpi.label || kpi.key;
    row.label.title = `${kpi.module}/${kpi.key}`;
    row.value.textContent = formatValue(kpi.value, kpi.unit);
    row.value.dataset.value = String(kpi.value);
    row.value.title = `Recorded ${new Date(kpi.updatedAt).toString()}`;
    const { direction, text } = describeChange(kpi);
    row.change.textContent = text;
    row.li.dataset.direction = direction;
  }

  /** Highlights a value that just changed (see .is-changed in style.css). */
  function pulse(node) {
    node.classList.remove('is-changed');
    void node.offsetWidth; // restart the animation
    node.classList.add('is-changed');
  }

  // ---- Sparklines -----------------------------------------------------------

  /** Merges samples ({value, at}) into a row's history, keeping the newest HISTORY_POINTS. */
  function addSamples(row, samples) {
    let added = false;
    for (const s of samples) {
      if (!row.samples.has(s.at) && Number.isFinite(timeOf(s.at))) added = true;
      if (Number.isFinite(timeOf(s.at))) row.samples.set(s.at, s.value);
    }
    if (!added) return;
    const sorted = [...row.samples].sort((a, b) => timeOf(a[0]) - timeOf(b[0])).slice(-HISTORY_POINTS);
    row.samples = new Map(sorted);
    drawSpark(row);
  }

  /** Redraws a sparkline from its samples: evenly spaced, scaled to their range. */
  function drawSpark(row) {
    const values = [...row.samples.values()];
    const { spark } = row;
    spark.replaceChildren();
    spark.setAttribute('data-points', String(values.length));
    if (values.length === 0) return;
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const x = (i) => (values.length === 1 ? SPARK_WIDTH - SPARK_PAD : SPARK_PAD + (i * (SPARK_WIDTH - 2 * SPARK_PAD)) / (values.length - 1));
    const y = (v) => (hi === lo ? SPARK_HEIGHT / 2 : SPARK_HEIGHT - SPARK_PAD - ((v - lo) * (SPARK_HEIGHT - 2 * SPARK_PAD)) / (hi - lo));
    const points = values.map((v, i) => `${x(i).toFixed(2)},${y(v).toFixed(2)}`).join(' ');
    const title = svgElement('title');
    title.textContent =
      values.length === 1
        ? `1 value: ${numberFormat.format(lo)}`
        : `Last ${values.length} values: ${numberFormat.format(lo)} to ${numberFormat.format(hi)}`;
    const last = values.length - 1;
    spark.append(
      title,
      svgElement('polyline', { class: 'spark-line', points, 'vector-effect': 'non-scaling-stroke' }),
      svgElement('circle', { class: 'spark-dot', cx: x(last).toFixed(2), cy: y(values[last]).toFixed(2), r: 2 }),
    );
  }

  /**
   * Loads a row's history: all of it the first time, then (after a
   * reconnect) what came since the newest sample shown.
   */
  async function loadHistory(row) {
    if (row.historyLoading || locked) return;
    row.historyLoading = true;
    const times = [...row.samples.keys()];
    const since = row.historyLoaded && times.length > 0 ? times[times.length - 1] : null;
    try {
      const data = await client.query(KPI_HISTORY_QUERY, {
        module: row.card.module,
        key: row.key,
        since,
        limit: HISTORY_POINTS,
      });
      addSamples(row, data.kpiHistory);
      row.historyLoaded = true;
    } catch (err) {
      console.warn(`switchboard: loading the history of ${row.card.module}/${row.key} failed`, err);
    } finally {
      row.historyLoading = false;
    }
  }

  // ---- Dashboard and top movers ---------------------------------------------

  function renderState() {
    el.loading.hidden = locked || loaded || cards.size > 0;
    el.empty.hidden = locked || !loaded || cards.size > 0;
    el.signIn.hidden = !locked;
  }

  /**
   * A stream's failed handler: UNAUTHENTICATED (KPIs are for signed-in
   * users) stops every stream and empties the panel until the session
   * changes, and gives up (true); other failures are retried.
   */
  function lockedOut(err) {
    if (!err || err.code !== 'UNAUTHENTICATED') return false;
    if (locked) return true;
    locked = true;
    loaded = false;
    stopDashboard();
    for (const card of cards.values()) card.stop();
    cards.clear();
    el.cards.replaceChildren();
    el.movers.replaceChildren();
    el.moversTime.textContent = '';
    showMessage(el.error, '');
    renderState();
    onModules([]);
    return true;
  }

  function renderMovers(dashboard) {
    el.moversTime.textContent = formatClock(dashboard.generatedAt);
    el.moversTime.dateTime = dashboard.generatedAt;
    el.movers.replaceChildren(
      ...dashboard.topMovers.map((kpi) => {
        const li = element('li', 'mover');
        li.dataset.module = kpi.module;
        li.dataset.key = kpi.key;
        const { direction, text } = describeChange(kpi);
        li.dataset.direction = direction;
        li.append(
          element('span', 'mover-name', `${kpi.module} · ${kpi.label || kpi.key}`),
          element('span', 'mover-value', formatValue(kpi.value, kpi.unit)),
          element('span', 'kpi-change', text),
        );
        return li;
      }),
    );
  }

  function followDashboard() {
    stopDashboard = followStream(client, DASHBOARD_SUBSCRIPTION, {
      variables: { topN: TOP_MOVERS },
      next: (data) => {
        const dashboard = data.dashboard;
        if (!dashboard) return;
        loaded = true;
        showMessage(el.error, '');
        for (const summary of dashboard.modules) {
          cardFor(summary.module);
          for (const kpi of summary.kpis) applyKPI(kpi);
        }
        renderMovers(dashboard);
        renderState();
      },
      failed: (err) => {
        if (lockedOut(err)) return true;
        if (err) showMessage(el.error, `The dashboard stopped: ${sentence(err.message)} Retrying…`);
        return false;
      },
    });
  }

  followDashboard();

  // ---- Connection -----------------------------------------------------------

  let connectedBefore = false;

  function connectionChanged(state) {
    if (state !== 'connected') return;
    // The streams send current values again by themselves; the samples
    // recorded while the page was offline come from the history.
    if (connectedBefore) for (const card of cards.values()) for (const row of card.rows.values()) loadHistory(row);
    connectedBefore = true;
  }

  renderState();

  return {
    connectionChanged,
    sessionChanged: () => {
      // A new session may see what the last one could not: ask again.
      if (!locked) return;
      locked = false;
      renderState();
      followDashboard();
    },
    kpisRecorded: (kpis) => {
      if (locked) return;
      for (const kpi of kpis) applyKPI(kpi, { live: true });
    },
  };
}
