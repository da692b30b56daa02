// The notification bell: a live unread badge in the header and, under it, a
// list of the caller's notifications, newest first, that grows live. A
// click marks one read; a button marks all of them read.
//
// The badge shows the server's count from the unreadCount subscription only,
// so a read in another tab changes it here too. The list follows
// notificationAdded from the newest notification it holds, so a reconnect
// replays exactly what was missed; when the count drops below what the list
// shows as unread (read elsewhere), the list's read marks are refreshed.
// Everything the server sends is shown with textContent, never as HTML.

import { $, compareIds, element, errorText, flash, followStream, insertSorted, normaliseId, sentence, showMessage, timeElement } from './ui.js';

const PAGE_SIZE = 20; // notifications per page
const MAX_PAGE = 100; // the most the server returns at once
const REFRESH_DELAY = 250; // ms to gather count changes before refreshing read marks
const RETRY_DELAY = 5000; // ms before a failed load is tried again

const NOTIFICATION_FIELDS = 'id title body level link broadcast read createdAt';

const NOTIFICATIONS_QUERY = `query Notifications($first: Int, $after: String) {
  notifications(first: $first, after: $after) {
    edges { node { ${NOTIFICATION_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const NOTIFICATION_ADDED_SUBSCRIPTION = `subscription NotificationAdded($after: ID) {
  notificationAdded(after: $after) { ${NOTIFICATION_FIELDS} }
}`;

const UNREAD_COUNT_SUBSCRIPTION = 'subscription UnreadCount { unreadCount }';

const MARK_READ_MUTATION = `mutation MarkNotificationRead($id: ID!) {
  markNotificationRead(id: $id) { ${NOTIFICATION_FIELDS} }
}`;

const MARK_ALL_READ_MUTATION = 'mutation MarkAllNotificationsRead { markAllNotificationsRead }';

/** Whether a link may be followed: http(s), or a path on this site. */
function safeLink(link) {
  return typeof link === 'string' && (/^https?:\/\//i.test(link) || /^\/(?![/\\])/.test(link));
}

/**
 * Sets up the notification bell.
 *
 * @param {object} options
 * @param {object} options.client the page's client (see client.js)
 * @param {() => (object|null)} options.getSession the current session, or null
 * @param {(notice: string) => void} options.onUnauthenticated the server
 *   refused the session's token; the page should forget it
 * @returns {{sessionChanged: () => void, connectionChanged: (state: string) => void}}
 */
export function createNotifications({ client, getSession, onUnauthenticated }) {
  const el = {
    bell: $('bell'),
    badge: $('bell-badge'),
    panel: $('notif-panel'),
    list: $('notif-list'),
    loading: $('notif-loading'),
    empty: $('notif-empty'),
    more: $('notif-more'),
    readAll: $('notif-read-all'),
    error: $('notif-error'),
  };

  const myId = () => getSession()?.user.id ?? null;

  function reportError(what, err) {
    showMessage(el.error, `${what}: ${errorText(err)}`);
    if (err.code === 'UNAUTHENTICATED') onUnauthenticated(`${sentence(err.message)} Sign in again.`);
  }

  /**
   * The signed-in user's inbox, replaced at every change of user. Async
   * work checks `b === inbox` when it resumes and drops its result
   * otherwise.
   */
  let inbox = null;

  function newInbox(userId) {
    return {
      userId,
      /** Notification id → {n, li}, for every notification listed. */
      items: new Map(),
      /** The highest id listed: where notificationAdded resumes. */
      maxId: null,
      endCursor: null,
      hasNext: false,
      loaded: false,
      loading: false,
      /** The unread count the server last sent, or null before it. */
      unread: null,
      refreshTimer: null,
      retryTimer: null,
      stops: [],
    };
  }

  function open(userId) {
    const b = newInbox(userId);
    inbox = b;
    el.bell.hidden = false;
    b.stops.push(
      followStream(client, UNREAD_COUNT_SUBSCRIPTION, {
        next: (data) => b === inbox && typeof data.unreadCount === 'number' && unreadChanged(b, data.unreadCount),
        failed: (err) => b !== inbox || (err && err.code === 'UNAUTHENTICATED'),
      }),
    );
    render(b);
    loadFirst(b);
  }

  function close() {
    const b = inbox;
    inbox = null;
    el.bell.hidden = true;
    setOpen(false);
    if (!b) return;
    for (const stop of b.stops) stop();
    clearTimeout(b.refreshTimer);
    clearTimeout(b.retryTimer);
    el.list.replaceChildren();
    showMessage(el.error, '');
  }

  // ---- The list -------------------------------------------------------------

  /** Lists a notification once, in its place (newest first), or updates it. */
  function upsert(b, n, { live = false } = {}) {
    const id = normaliseId(n && n.id);
    if (id === null) return;
    const item = b.items.get(id);
    if (item) {
      item.n = n;
      renderItem(item);
      return;
    }
    const entry = createItem(b, id, n);
    b.items.set(id, entry);
    renderItem(entry);
    if (live) flash(entry.li);
    insertSorted(el.list, entry.li, (x, y) => compareIds(y.dataset.id, x.dataset.id));
    if (b.maxId === null || compareIds(id, b.maxId) > 0) b.maxId = id;
  }

  function createItem(b, id, n) {
    const li = element('li', 'notif');
    li.dataset.id = id;
    const main = element('button', 'notif-main');
    main.type = 'button';
    const title = element('span', 'notif-title');
    const meta = element('span', 'notif-meta');
    const body = element('span', 'notif-body');
    main.append(title, meta, body);
    main.addEventListener('click', () => markRead(b, id));
    li.append(main);

    const entry = { n, li, main, title, meta, body, link: null };
    if (safeLink(n.link)) {
      const a = element('a', 'notif-link', 'Open link');
      a.href = n.link;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.addEventListener('click', () => markRead(b, id));
      li.append(a);
      entry.link = a;
    }
    return entry;
  }

  function renderItem(entry) {
    const { n, li } = entry;
    li.dataset.read = String(Boolean(n.read));
    li.dataset.level = String(n.level || 'INFO').toLowerCase();
    entry.title.textContent = n.title;
    entry.body.textContent = n.body || '';
    entry.body.hidden = !n.body;
    entry.meta.replaceChildren(
      `${n.broadcast ? 'Everyone' : 'You'} · ${String(n.level || 'INFO').toLowerCase()} · `,
      timeElement(n.createdAt),
    );
    entry.main.title = n.read ? '' : 'Mark as read';
  }

  function render(b) {
    el.loading.hidden = b.loaded || b.items.size > 0;
    el.empty.hidden = !b.loaded || b.items.size > 0;
    el.more.hidden = !b.loaded || !b.hasNext;
    el.more.disabled = b.loading;
    el.readAll.disabled = !b.unread;
  }

  async function fetchPage(b, after) {
    const data = await client.query(NOTIFICATIONS_QUERY, { first: PAGE_SIZE, after });
    if (b !== inbox) return;
    for (const edge of data.notifications.edges) upsert(b, edge.node);
    const { hasNextPage, endCursor } = data.notifications.pageInfo;
    if (after == null || data.notifications.edges.length > 0) {
      b.endCursor = endCursor;
      b.hasNext = Boolean(hasNextPage && endCursor);
    } else {
      b.hasNext = false;
    }
  }

  /** Loads the newest page, then follows new notifications from the newest listed. */
  async function loadFirst(b) {
    b.loading = true;
    try {
      await fetchPage(b, null);
      if (b !== inbox) return;
      b.loaded = true;
      showMessage(el.error, '');
      b.stops.push(
        followStream(client, NOTIFICATION_ADDED_SUBSCRIPTION, {
          variables: () => ({ after: b.maxId ?? '0' }),
          next: (data) => b === inbox && data.notificationAdded && arrived(b, data.notificationAdded),
          failed: (err) => b !== inbox || (err && err.code === 'UNAUTHENTICATED'),
        }),
      );
    } catch (err) {
      if (b !== inbox) return;
      reportError('Couldn’t load notifications', err);
      if (err.code !== 'UNAUTHENTICATED') b.retryTimer = setTimeout(() => b === inbox && loadFirst(b), RETRY_DELAY);
    } finally {
      b.loading = false;
      if (b === inbox) render(b);
    }
  }

  async function loadMore() {
    const b = inbox;
    if (!b || !b.loaded || b.loading || !b.hasNext) return;
    b.loading = true;
    render(b);
    try {
      await fetchPage(b, b.endCursor);
    } catch (err) {
      if (b === inbox) reportError('Couldn’t load older notifications', err);
    } finally {
      b.loading = false;
      if (b === inbox) render(b);
    }
  }

  function arrived(b, n) {
    upsert(b, n, { live: true });
    render(b);
    if (el.panel.hidden) ring();
  }

  /** Shakes the bell briefly (see .is-ringing in style.css). */
  function ring() {
    el.bell.classList.remove('is-ringing');
    void el.bell.offsetWidth; // restart the animation
    el.bell.classList.add('is-ringing');
  }

  // ---- Unread count and read marks ------------------------------------------

  function unreadChanged(b, count) {
    b.unread = count;
    el.bell.dataset.unread = String(count);
    el.badge.textContent = count > 99 ? '99+' : String(count);
    el.badge.hidden = count === 0;
    el.bell.setAttribute('aria-label', count === 1 ? 'Notifications, 1 unread' : `Notifications, ${count} unread`);
    render(b);
    // Fewer unread than the list shows: some were read elsewhere.
    const shownUnread = [...b.items.values()].filter((item) => !item.n.read).length;
    if (b.loaded && shownUnread > count) {
      clearTimeout(b.refreshTimer);
      b.refreshTimer = setTimeout(() => refreshReadMarks(b), REFRESH_DELAY);
    }
  }

  /** Reloads the read marks of the notifications listed (the newest MAX_PAGE). */
  async function refreshReadMarks(b) {
    try {
      const first = Math.min(MAX_PAGE, Math.max(PAGE_SIZE, b.items.size));
      const data = await client.query(NOTIFICATIONS_QUERY, { first, after: null });
      if (b !== inbox) return;
      for (const edge of data.notifications.edges) {
        const item = b.items.get(normaliseId(edge.node.id));
        if (item) {
          item.n = edge.node;
          renderItem(item);
        }
      }
    } catch (err) {
      console.warn('switchboard: refreshing read marks failed', err);
    }
  }

  async function markRead(b, id) {
    const item = b.items.get(id);
    if (!item || item.n.read) return;
    try {
      const data = await client.query(MARK_READ_MUTATION, { id: item.n.id });
      if (b === inbox) {
        upsert(b, data.markNotificationRead);
        showMessage(el.error, '');
      }
    } catch (err) {
      if (b === inbox) reportError('Not marked read', err);
    }
  }

  async function markAllRead() {
    const b = inbox;
    if (!b) return;
    el.readAll.disabled = true;
    try {
      await client.query(MARK_ALL_READ_MUTATION);
      if (b !== inbox) return;
      for (const item of b.items.values()) {
        item.n = { ...item.n, read: true };
        renderItem(item);
      }
      showMessage(el.error, '');
    } catch (err) {
      if (b === inbox) reportError('Not marked read', err);
    } finally {
      if (b === inbox) render(b);
    }
  }

  // ---- The dropdown ---------------------------------------------------------

  function setOpen(open) {
    el.panel.hidden = !open;
    el.bell.setAttribute('aria-expanded', String(open));
  }

  el.bell.addEventListener('click', () => {
    setOpen(el.panel.hidden);
    el.bell.classList.remove('is-ringing');
  });
  el.more.addEventListener('click', loadMore);
  el.readAll.addEventListener('click', markAllRead);

  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !el.panel.hidden) {
      setOpen(false);
      el.bell.focus();
    }
  });

  document.addEventListener('click', (event) => {
    if (el.panel.hidden) return;
    if (el.panel.contains(event.target) || el.bell.contains(event.target)) return;
    setOpen(false);
  });

  // ---- Session --------------------------------------------------------------

  function sessionChanged() {
    const id = myId();
    if (inbox && inbox.userId === id) return;
    close();
    if (id !== null) open(id);
  }

  sessionChanged();

  return { sessionChanged, connectionChanged: () => {} };
}
