// Switchboard's page: sign in as a guest or with a token, post statuses and
// watch the public feed live, chat (see chat.js), watch the KPI dashboard
// (dashboard.js), get notifications (notifications.js) and, with the admin
// or publisher role, send notifications and record KPIs (admin.js).
// Everything the server sends is shown with textContent, never parsed as
// HTML.

import { createAdmin } from './admin.js';
import { createChat } from './chat.js';
import { createClient } from './client.js';
import { createDashboard } from './dashboard.js';
import { createNotifications } from './notifications.js';
import {
  $,
  compareIds,
  enterSubmits,
  errorText,
  flash,
  insertSorted,
  normaliseId,
  renderPost,
  sentence,
  showMessage,
  tokenClaims,
  tokenRoles,
} from './ui.js';

const SESSION_KEY = 'switchboard.session';
const PAGE_SIZE = 50;
const MAX_TIMER_DELAY = 2 ** 31 - 1; // setTimeout's limit, in ms

const STATUS_FIELDS = 'id text createdAt author { id name }';

const STATUSES_QUERY = `query Statuses($first: Int!, $after: String) {
  statuses(first: $first, after: $after) {
    edges { cursor node { ${STATUS_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const STATUS_POSTED_SUBSCRIPTION = `subscription StatusPosted($after: ID) {
  statusPosted(after: $after) { ${STATUS_FIELDS} }
}`;

const SIGN_OUT_MUTATION = 'mutation SignOut { signOut }';

const SIGN_IN_MUTATION = `mutation SignIn($name: String!) {
  signIn(name: $name) { token expiresAt user { id name } }
}`;

const POST_STATUS_MUTATION = `mutation PostStatus($text: String!) {
  postStatus(text: $text) { id }
}`;

const ME_QUERY = 'query Me { me { id name } }';

const el = {
  conn: $('conn'),
  connText: $('conn-text'),
  signinForm: $('signin-form'),
  name: $('name'),
  signin: $('signin'),
  signinError: $('signin-error'),
  tokenSignin: $('token-signin'),
  tokenForm: $('token-form'),
  token: $('token'),
  tokenSubmit: $('token-submit'),
  tokenError: $('token-error'),
  me: $('me'),
  meName: $('me-name'),
  meId: $('me-id'),
  meRoles: $('me-roles'),
  signout: $('signout'),
  postForm: $('post-form'),
  statusText: $('status-text'),
  statusCount: $('status-count'),
  post: $('post'),
  postError: $('post-error'),
  statuses: $('statuses'),
  loading: $('statuses-loading'),
  empty: $('statuses-empty'),
  feedError: $('feed-error'),
  loadMore: $('load-more'),
};

// ---- Session -----------------------------------------------------------------

/** Reads the stored session, discarding it when malformed or expired. */
function loadSession() {
  let raw = null;
  try {
    raw = localStorage.getItem(SESSION_KEY);
  } catch {
    return null; // storage unavailable (privacy settings)
  }
  if (!raw) return null;
  try {
    const s = JSON.parse(raw);
    const expires = Date.parse(s && s.expiresAt);
    if (
      typeof s.token === 'string' &&
      s.token !== '' &&
      s.user &&
      typeof s.user.name === 'string' &&
      Number.isFinite(expires) &&
      expires > Date.now()
    ) {
      return s;
    }
  } catch {
    // fall through: unreadable
  }
  try {
    localStorage.removeItem(SESSION_KEY);
  } catch {
    // ignore
  }
  return null;
}

function storeSession(s) {
  try {
    if (s) localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    else localStorage.removeItem(SESSION_KEY);
  } catch {
    // Storage unavailable: the session lasts as long as the page.
  }
}

let session = loadSession();
let expiryTimer = null;

/** Switches to a new session (or none), updating storage, UI and socket. */
function setSession(next, { restart = true, notice = '' } = {}) {
  session = next;
  storeSession(next);
  renderSession(notice);
  if (restart) client.restart();
  for (const panel of panels) panel.sessionChanged();
}

/** Forgets the session; `notice` tells the user why, when it was not their choice. */
function forgetSession(notice = '', options = {}) {
  if (!session) return;
  setSession(null, { ...options, notice });
}

function renderSession(notice = '') {
  clearTimeout(expiryTimer);
  expiryTimer = null;
  const signedIn = session !== null;

  el.signinForm.hidden = signedIn;
  el.name.disabled = signedIn;
  el.signin.disabled = signedIn;
  el.tokenSignin.hidden = signedIn;
  el.tokenSubmit.disabled = signedIn;
  el.me.hidden = !signedIn;
  el.postForm.hidden = !signedIn;
  el.statusText.disabled = !signedIn;
  el.post.disabled = !signedIn;

  if (signedIn) {
    el.meName.textContent = session.user.name;
    el.meId.textContent = `#${session.user.id}`;
    el.meRoles.textContent = tokenRoles(session.token).join(' · ');
    showMessage(el.signinError, '');
    const left = Date.parse(session.expiresAt) - Date.now();
    expiryTimer = setTimeout(() => {
      if (Date.parse(session?.expiresAt) <= Date.now()) {
        forgetSession('Your session has expired. Sign in again to post.');
      } else {
        renderSession(); // the timer was clamped; re-arm it
      }
    }, Math.max(0, Math.min(left, MAX_TIMER_DELAY)));
  } else {
    el.meName.textContent = '';
    el.meId.textContent = '';
    el.meRoles.textContent = '';
    showMessage(el.signinError, notice);
  }
  updateCounter();
}

// ---- Connection indicator ----------------------------------------------------

/**
 * The panels that follow the session and the connection (chat, dashboard,
 * notifications, admin), set up once the client exists.
 */
const panels = [];

let connState = { state: 'connecting', retryAt: null };
let connTicker = null;

function renderConnection(info) {
  connState = info;
  clearInterval(connTicker);
  connTicker = null;
  if (info.state === 'reconnecting' && info.retryAt) {
    connTicker = setInterval(paintConnection, 250);
  }
  paintConnection();
  if (info.state === 'connected' && !feed.loaded) loadInitial();
  // The client reports its first state while it is being created, before
  // the panels exist; that one ("connecting") does not concern them.
  for (const panel of panels) panel.connectionChanged(info.state);
}

function paintConnection() {
  const { state, retryAt } = connState;
  let text;
  let title;
  if (state === 'connected') {
    text = 'Live';
    title = 'Connected: statuses and messages appear as they are posted.';
  } else if (state === 'reconnecting') {
    const seconds = retryAt ? Math.ceil((retryAt - Date.now()) / 1000) : 0;
    text = seconds >= 1 ? `Reconnecting in ${seconds} s…` : 'Reconnecting…';
    title = 'The live connection was lost; what is posted meanwhile will be caught up.';
  } else {
    text = 'Connecting…';
    title = 'Opening the live connection.';
  }
  if (el.conn.dataset.state !== state) el.conn.dataset.state = state;
  if (el.connText.textContent !== text) el.connText.textContent = text;
  el.conn.title = title;
}

// ---- Feed --------------------------------------------------------------------

const feed = {
  /** id → <li>, for every status shown. */
  items: new Map(),
  /** The highest id seen, as a string, or null before any. */
  maxId: null,
  /** Cursor of the last edge of the oldest page loaded. */
  endCursor: null,
  hasNextPage: false,
  loaded: false,
  loading: false,
  subscribed: false,
};

/**
 * Shows a status once, in its place (newest first, by numeric id), whichever
 * way it arrived: first page, older page, live or replayed.
 */
function addStatus(status, { live = false } = {}) {
  if (!status || status.id == null) return;
  const id = normaliseId(status.id);
  if (id === null) {
    console.warn('switchboard: status with a non-numeric id ignored', status);
    return;
  }
  if (feed.items.has(id)) return;

  const li = renderPost(status, id, 'status');
  if (live) flash(li);
  // The feed is sorted newest (highest id) first.
  insertSorted(el.statuses, li, (a, b) => compareIds(b.dataset.id, a.dataset.id));

  feed.items.set(id, li);
  if (feed.maxId === null || compareIds(id, feed.maxId) > 0) feed.maxId = id;
}

function renderFeedState() {
  el.loading.hidden = feed.loaded || feed.items.size > 0;
  el.empty.hidden = !feed.loaded || feed.items.size > 0;
  el.loadMore.hidden = !feed.loaded || !feed.hasNextPage;
  el.loadMore.disabled = feed.loading;
  el.loadMore.textContent = feed.loading && feed.loaded ? 'Loading…' : 'Load older statuses';
}

async function fetchPage(after) {
  const data = await client.query(STATUSES_QUERY, { first: PAGE_SIZE, after });
  const page = data.statuses;
  for (const edge of page.edges) addStatus(edge.node);
  if (page.edges.length > 0 || after == null) {
    feed.endCursor = page.pageInfo.endCursor;
    feed.hasNextPage = Boolean(page.pageInfo.hasNextPage && page.pageInfo.endCursor);
  } else {
    feed.hasNextPage = false;
  }
}

let initialRetryTimer = null;
let initialRetryDelay = 2000;

async function loadInitial() {
  if (feed.loaded || feed.loading) return;
  clearTimeout(initialRetryTimer);
  feed.loading = true;
  renderFeedState();
  try {
    await fetchPage(null);
    feed.loaded = true;
    showMessage(el.feedError, '');
    startSubscription();
  } catch (err) {
    console.error('switchboard: loading statuses failed', err);
    showMessage(el.feedError, `Couldn’t load statuses: ${sentence(err.message)} Retrying…`);
    initialRetryTimer = setTimeout(loadInitial, initialRetryDelay);
    initialRetryDelay = Math.min(initialRetryDelay * 2, 10000);
  } finally {
    feed.loading = false;
    renderFeedState();
  }
}

async function loadMore() {
  if (!feed.loaded || feed.loading || !feed.hasNextPage) return;
  feed.loading = true;
  renderFeedState();
  try {
    await fetchPage(feed.endCursor);
    showMessage(el.feedError, '');
  } catch (err) {
    console.error('switchboard: loading older statuses failed', err);
    showMessage(el.feedError, `Couldn’t load older statuses: ${sentence(err.message)}`);
  } finally {
    feed.loading = false;
    renderFeedState();
  }
}

/**
 * Follows the feed live. On every (re)subscribe the server is asked to replay
 * what came after the newest status shown, so nothing posted while the
 * connection was down is missed; duplicates are dropped by addStatus.
 */
function startSubscription() {
  if (feed.subscribed) return;
  feed.subscribed = true;
  client.subscribe(STATUS_POSTED_SUBSCRIPTION, {
    variables: () => ({ after: feed.maxId ?? '0' }),
    next: (data) => {
      if (data && data.statusPosted) {
        addStatus(data.statusPosted, { live: true });
        renderFeedState();
      }
    },
    error: (err) => {
      console.error('switchboard: live feed failed', err);
      feed.subscribed = false;
      showMessage(el.feedError, `The live feed stopped: ${sentence(err.message)} Retrying…`);
      setTimeout(() => {
        showMessage(el.feedError, '');
        startSubscription();
      }, 5000);
    },
    complete: () => {
      // The server ended the stream (it should not); follow it again.
      feed.subscribed = false;
      setTimeout(startSubscription, 1000);
    },
  });
}

// ---- Forms -------------------------------------------------------------------

el.signinForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (session) return;
  const name = el.name.value;
  el.signin.disabled = true;
  showMessage(el.signinError, '');
  try {
    const data = await client.query(SIGN_IN_MUTATION, { name });
    const s = data.signIn;
    el.name.value = '';
    showMessage(el.postError, '');
    setSession({
      token: s.token,
      expiresAt: s.expiresAt,
      user: { id: s.user.id, name: s.user.name },
      guest: true, // this page started the session, so signing out ends it
    });
    el.statusText.focus();
  } catch (err) {
    showMessage(el.signinError, err.message);
  } finally {
    el.signin.disabled = session !== null;
  }
});

// A token minted by an operator (`switchboard token`): the server says whom
// it names; its expiry and roles are read from it.
el.tokenForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (session) return;
  const token = el.token.value.trim();
  const claims = tokenClaims(token);
  if (!claims || !Number.isFinite(claims.exp)) {
    showMessage(el.tokenError, 'That is not a Switchboard token.');
    return;
  }
  el.tokenSubmit.disabled = true;
  showMessage(el.tokenError, '');
  try {
    const data = await client.query(ME_QUERY, {}, { token });
    if (!data.me) throw new Error('The server does not know this token.');
    el.token.value = '';
    el.tokenSignin.open = false;
    setSession({
      token,
      expiresAt: new Date(claims.exp * 1000).toISOString(),
      user: { id: data.me.id, name: data.me.name },
    });
  } catch (err) {
    showMessage(el.tokenError, errorText(err));
  } finally {
    el.tokenSubmit.disabled = session !== null;
  }
});

// Signing out of a guest session ends it on the server too (every tab and
// device holding its token is signed out within seconds); a pasted operator
// token is only forgotten here, since the operator may use it elsewhere.
el.signout.addEventListener('click', () => {
  const ending = session;
  showMessage(el.postError, '');
  setSession(null);
  el.name.focus();
  if (ending && ending.guest) {
    client.query(SIGN_OUT_MUTATION, {}, { token: ending.token }).catch(() => {
      // Best effort: a session that already ended, or a server out of reach;
      // the token is forgotten here either way.
    });
  }
});

function updateCounter() {
  const max = el.statusText.maxLength > 0 ? el.statusText.maxLength : 500;
  const left = max - el.statusText.value.length;
  el.statusCount.textContent = String(left);
  el.statusCount.classList.toggle('is-low', left <= 20);
}

el.statusText.addEventListener('input', () => {
  updateCounter();
  if (!el.postError.hidden) showMessage(el.postError, '');
});

// Enter posts; Shift+Enter starts a new line.
enterSubmits(el.statusText, el.postForm);

let posting = false;

el.postForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!session || posting) return;
  posting = true;
  el.post.disabled = true;
  showMessage(el.postError, '');
  try {
    await client.write(POST_STATUS_MUTATION, { text: el.statusText.value });
    // The status itself arrives through the subscription.
    el.statusText.value = '';
    updateCounter();
  } catch (err) {
    showMessage(el.postError, err.message);
    if (err.code === 'UNAUTHENTICATED') {
      forgetSession(`${sentence(err.message)} Sign in again to post.`);
    }
  } finally {
    posting = false;
    el.post.disabled = session === null;
    if (session) el.statusText.focus();
  }
});

el.loadMore.addEventListener('click', loadMore);

// Another tab signed in or out: follow it.
window.addEventListener('storage', (event) => {
  if (event.key !== SESSION_KEY && event.key !== null) return;
  const next = loadSession();
  if ((next && next.token) === (session && session.token)) return;
  session = next;
  renderSession();
  client.restart();
  for (const panel of panels) panel.sessionChanged();
});

// ---- Start -------------------------------------------------------------------

// Created last: it reports its first state at once, and the handlers above
// must exist by then.
const client = createClient({
  getToken: () => (session ? session.token : null),
  onTokenRejected: (token) => {
    // The socket reconnects without the token by itself; no restart needed.
    if (session && session.token === token) {
      forgetSession('Your session is no longer valid. Sign in again to post.', { restart: false });
    }
  },
  onStateChange: renderConnection,
});

const onUnauthenticated = (notice) => forgetSession(notice);
const getSession = () => session;
const admin = createAdmin({
  client,
  getSession,
  onUnauthenticated,
  onKPIsRecorded: (kpis) => dashboard.kpisRecorded(kpis),
});
const dashboard = createDashboard({ client, onModules: admin.setModules });
panels.push(
  createChat({ client, getSession, onUnauthenticated }),
  createNotifications({ client, getSession, onUnauthenticated }),
  dashboard,
  admin,
);

renderSession();
renderFeedState();
paintConnection();
loadInitial();

// Check a stored token is still good (a server restart with a new signing
// key, say); a refused one is forgotten.
if (session) {
  const checked = session;
  client
    .query(ME_QUERY)
    .then((data) => {
      if (session !== checked) return;
      if (data.me === null) {
        forgetSession('Your session is no longer valid. Sign in again to post.');
      } else if (data.me.name !== session.user.name) {
        setSession({ ...session, user: { id: data.me.id, name: data.me.name } }, { restart: false });
      }
    })
    .catch((err) => {
      if (session === checked && err.code === 'UNAUTHENTICATED') {
        forgetSession('Your session is no longer valid. Sign in again to post.');
      }
    });
}
