// The chat panel: the room list (paged and searchable, in the server's
// order: the rooms the user is in first, then by latest activity) with live
// unread badges, the open room's
// history with scroll-back, its live messages, who is online in it and who
// is typing, a people search that starts direct conversations, and room
// creation. It shares the page's GraphQL client, so every subscription runs
// on the page's one WebSocket and resumes by itself after a reconnect.
// Everything the server sends is shown with textContent, never as HTML.

import { $, compareIds, enterSubmits, flash, insertSorted, normaliseId, renderPost, sentence, showMessage } from './ui.js';

const HISTORY_PAGE = 50; // messages per history page
const TYPING_REPEAT = 3000; // ms between setTyping(true) while the user types
const SEARCH_DELAY = 250; // ms of quiet typing before people or rooms are searched
const PEOPLE_RESULTS = 8; // people shown per search
const SCROLL_SLACK = 48; // px from an edge of the history that counts as at it
const RETRY_DELAY = 5000; // ms before a failed load or stream is tried again
const ROOMS_PAGE = 20; // rooms per page of the room list
const MAX_ROOMS_PAGE = 100; // the most rooms the server returns in one page

const MESSAGE_FIELDS = 'id roomId text createdAt author { id name }';
const ROOM_FIELDS = `id name direct joined activeAt unreadCount lastMessage { ${MESSAGE_FIELDS} }`;

const ROOMS_QUERY = `query Rooms($first: Int, $after: String, $search: String) {
  rooms(first: $first, after: $after, search: $search) {
    edges { node { ${ROOM_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const MESSAGES_QUERY = `query Messages($roomId: ID!, $last: Int, $before: String) {
  messages(roomId: $roomId, last: $last, before: $before) {
    edges { node { ${MESSAGE_FIELDS} } }
    pageInfo { hasPreviousPage startCursor }
  }
}`;

const USERS_QUERY = `query Users($search: String!, $first: Int) {
  users(search: $search, first: $first) { id name }
}`;

const CREATE_ROOM_MUTATION = `mutation CreateRoom($name: String!) {
  createRoom(name: $name) { ${ROOM_FIELDS} }
}`;

const OPEN_DIRECT_ROOM_MUTATION = `mutation OpenDirectRoom($userId: ID!) {
  openDirectRoom(userId: $userId) { ${ROOM_FIELDS} }
}`;

const POST_MESSAGE_MUTATION = `mutation PostMessage($roomId: ID!, $text: String!) {
  postMessage(roomId: $roomId, text: $text) { ${MESSAGE_FIELDS} }
}`;

const SET_TYPING_MUTATION = `mutation SetTyping($roomId: ID!, $typing: Boolean!) {
  setTyping(roomId: $roomId, typing: $typing)
}`;

const MARK_ROOM_READ_MUTATION = `mutation MarkRoomRead($roomId: ID!) {
  markRoomRead(roomId: $roomId) { ${ROOM_FIELDS} }
}`;

const MESSAGE_ADDED_SUBSCRIPTION = `subscription MessageAdded($roomId: ID!, $after: ID) {
  messageAdded(roomId: $roomId, after: $after) { ${MESSAGE_FIELDS} }
}`;

const PRESENCE_SUBSCRIPTION = `subscription Presence($roomId: ID!) {
  presence(roomId: $roomId) { roomId count users(first: 50) { id name } }
}`;

const TYPING_SUBSCRIPTION = `subscription Typing($roomId: ID!) {
  typing(roomId: $roomId) { roomId typing expiresAt user { id name } }
}`;

const ROOMS_CHANGED_SUBSCRIPTION = `subscription RoomsChanged {
  roomsChanged { ${ROOM_FIELDS} }
}`;

/**
 * Sets up the chat panel.
 *
 * @param {object} options
 * @param {object} options.client the page's client (see client.js)
 * @param {() => (object|null)} options.getSession the current session
 *   ({token, user: {id, name}}), or null when signed out
 * @param {(notice: string) => void} options.onUnauthenticated the server
 *   refused the session's token; the page should forget it
 * @returns {{sessionChanged: () => void, connectionChanged: (state: string) => void}}
 *   to be called after every sign-in or sign-out, and on every connection
 *   state the client reports
 */
export function createChat({ client, getSession, onUnauthenticated }) {
  const el = {
    error: $('chat-error'),
    rooms: $('rooms'),
    roomsScroll: $('rooms-scroll'),
    roomsEmpty: $('rooms-empty'),
    moreRooms: $('more-rooms'),
    roomSearchForm: $('room-search-form'),
    roomSearch: $('room-search'),
    roomForm: $('room-form'),
    roomName: $('room-name'),
    createRoom: $('create-room'),
    roomError: $('room-error'),
    peopleForm: $('people-form'),
    peopleSearch: $('people-search'),
    peopleResults: $('people-results'),
    peopleEmpty: $('people-empty'),
    peopleError: $('people-error'),
    room: $('chat-room'),
    roomTitle: $('room-title'),
    roomKind: $('room-kind'),
    onlineCount: $('online-count'),
    onlineList: $('online-list'),
    scroller: $('messages-scroll'),
    loadOlder: $('load-older'),
    messagesLoading: $('messages-loading'),
    messagesEmpty: $('messages-empty'),
    messages: $('messages'),
    jumpLatest: $('jump-latest'),
    typing: $('typing'),
    messageForm: $('message-form'),
    messageText: $('message-text'),
    send: $('send'),
    messageError: $('message-error'),
    signinHint: $('chat-signin-hint'),
  };

  const myId = () => getSession()?.user.id ?? null;

  /**
   * Whether messages on screen count as read: the caller is signed in and
   * the page is visible. The open room is then marked read as messages come.
   */
  const readsOpenRoom = () => myId() !== null && document.visibilityState === 'visible';

  /** Shows err in node; a refused token also ends the session. */
  function reportError(node, what, err) {
    showMessage(node, `${what}: ${sentence(err.message)}`);
    if (err.code === 'UNAUTHENTICATED') {
      onUnauthenticated(`${sentence(err.message)} Sign in again to chat.`);
    }
  }

  // ---- Room list ------------------------------------------------------------

  /** Room id → {room, li, button, name, preview, badge}, for every room listed. */
  const rooms = new Map();
  /**
   * The list's paging: the search it shows, where its next page starts and
   * whether there is one, and a generation that a reload or a new search
   * moves on, so that a page arriving for an older list is dropped.
   */
  const list = { search: '', endCursor: null, hasMore: false, loaded: false, loadingMore: false, generation: 0 };
  let roomsLoading = null; // the first page's query in flight
  let roomsAgain = false; // load once more when it ends: something changed meanwhile
  let roomsRetry = null;

  /**
   * The server's order: the rooms the user is in first, then the most
   * recently active, then the newest. Live changes move entries by it.
   */
  function byListOrder(a, b) {
    if (a.dataset.joined !== b.dataset.joined) return a.dataset.joined === '1' ? -1 : 1;
    const newer = Number(b.dataset.activeAt) - Number(a.dataset.activeAt);
    return newer !== 0 ? newer : compareIds(b.dataset.roomId, a.dataset.roomId);
  }

  /** Whether room belongs in the list for the search shown (the server's rule, roughly). */
  const matchesSearch = (room) => list.search === '' || String(room.name).toLowerCase().includes(list.search.toLowerCase());

  /**
   * Loads the room list's first page (as many rooms as it shows, within a
   * page's bounds). Called at start, after every sign-in or sign-out, after
   * every reconnection (roomsChanged does not replay the changes made while
   * the page was offline) and when the search changes.
   */
  function loadRooms() {
    if (roomsLoading) {
      roomsAgain = true;
      return;
    }
    clearTimeout(roomsRetry);
    roomsLoading = (async () => {
      do {
        roomsAgain = false;
        const generation = ++list.generation;
        const first = Math.min(MAX_ROOMS_PAGE, Math.max(ROOMS_PAGE, rooms.size));
        try {
          const data = await client.query(ROOMS_QUERY, { first, search: list.search || null });
          if (generation !== list.generation) continue;
          syncRooms(data.rooms);
          showMessage(el.error, '');
        } catch (err) {
          console.error('switchboard: loading rooms failed', err);
          showMessage(el.error, `Couldn’t load the rooms: ${sentence(err.message)} Retrying…`);
          roomsRetry = setTimeout(loadRooms, RETRY_DELAY);
          return;
        }
      } while (roomsAgain);
    })().finally(() => {
      roomsLoading = null;
      // A scroll to the list's end while this page loaded was put off.
      if (scrolledToRoomsEnd()) loadMoreRooms();
    });
  }

  function scrolledToRoomsEnd() {
    const s = el.roomsScroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < SCROLL_SLACK;
  }

  /** Makes the list show exactly the rooms of this first page, keeping entries that stay. */
  function syncRooms(page) {
    const ids = new Set(page.edges.map((edge) => String(edge.node.id)));
    for (const [id, entry] of rooms) {
      if (!ids.has(id)) {
        entry.li.remove();
        rooms.delete(id);
      }
    }
    for (const edge of page.edges) upsertRoom(edge.node);
    list.loaded = true;
    setPaging(page.pageInfo);
    if (!view && list.search === '') openDefaultRoom();
  }

  function setPaging(pageInfo) {
    list.endCursor = pageInfo.endCursor;
    list.hasMore = Boolean(pageInfo.hasNextPage && pageInfo.endCursor);
    renderRoomsFooter();
  }

  function renderRoomsFooter() {
    el.moreRooms.hidden = !list.hasMore;
    el.moreRooms.disabled = list.loadingMore;
    el.moreRooms.textContent = list.loadingMore ? 'Loading…' : 'More rooms';
    el.roomsEmpty.hidden = !list.loaded || list.search === '' || rooms.size > 0;
  }

  /** Loads the list's next page (the button, or scrolling to the list's end). */
  async function loadMoreRooms() {
    if (!list.hasMore || list.loadingMore || roomsLoading) return;
    const generation = list.generation;
    list.loadingMore = true;
    renderRoomsFooter();
    try {
      const data = await client.query(ROOMS_QUERY, { first: ROOMS_PAGE, after: list.endCursor, search: list.search || null });
      if (generation !== list.generation) return;
      for (const edge of data.rooms.edges) upsertRoom(edge.node);
      setPaging(data.rooms.pageInfo);
    } catch (err) {
      if (generation === list.generation) showMessage(el.error, `Couldn’t load more rooms: ${sentence(err.message)}`);
    } finally {
      list.loadingMore = false;
      renderRoomsFooter();
    }
  }

  let roomSearchTimer = null;

  /** Shows the rooms whose name contains what the search box holds. */
  function searchRooms() {
    clearTimeout(roomSearchTimer);
    const search = el.roomSearch.value.trim();
    if (search === list.search) return;
    list.search = search;
    list.generation += 1; // a page of the previous list in flight is dropped
    loadRooms();
  }

  /**
   * Adds a room to the list, or updates its entry, in the list's order;
   * returns the entry.
   */
  function upsertRoom(room) {
    const id = String(room.id);
    let entry = rooms.get(id);
    if (!entry) {
      entry = createRoomEntry(id, room);
      rooms.set(id, entry);
    }
    entry.room = room;
    const { li } = entry;
    li.dataset.joined = room.joined ? '1' : '0';
    li.dataset.activeAt = String(Date.parse(room.activeAt) || 0);
    // Move it only when it is out of place, so a focused entry keeps focus.
    const prev = li.previousElementSibling;
    const next = li.nextElementSibling;
    if (!li.isConnected || (prev && byListOrder(prev, li) > 0) || (next && byListOrder(li, next) > 0)) {
      li.remove();
      insertSorted(el.rooms, li, byListOrder);
    }
    if (view && view.roomId === id) view.room = room;
    renderRoomEntry(entry);
    return entry;
  }

  function createRoomEntry(id, room) {
    const li = document.createElement('li');
    li.dataset.roomId = id;
    li.dataset.name = room.name;

    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'room-link';
    button.classList.toggle('is-direct', Boolean(room.direct));
    button.dataset.roomId = id;
    button.addEventListener('click', () => openRoom(id));

    const name = document.createElement('span');
    name.className = 'room-name';
    const preview = document.createElement('span');
    preview.className = 'room-preview';
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.dataset.role = 'unread';

    button.append(name, badge, preview);
    li.append(button);
    return { room, li, button, name, preview, badge };
  }

  /**
   * The unread count to show. The open room's messages are on screen, so
   * while they count as read its badge stays hidden (markRoomRead follows).
   */
  function shownUnread(entry) {
    if (view && view.roomId === entry.button.dataset.roomId && readsOpenRoom()) return 0;
    return Math.max(0, Number(entry.room.unreadCount) || 0);
  }

  function renderRoomEntry(entry) {
    const { room, button } = entry;
    entry.name.textContent = room.name;
    const last = room.lastMessage;
    entry.preview.textContent = last
      ? `${last.author ? last.author.name : 'Unknown'}: ${last.text}`
      : 'No messages yet';

    const unread = shownUnread(entry);
    button.dataset.unread = String(unread);
    entry.badge.textContent = unread > 99 ? '99+' : String(unread);
    entry.badge.hidden = unread === 0;
    entry.badge.title = `${unread} unread`;
    button.classList.toggle('is-unread', unread > 0);

    if (view && view.roomId === button.dataset.roomId) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
  }

  /**
   * Whether room, not listed, belongs among the rooms loaded so far: with
   * more pages to load, one that sorts after the last listed comes with a
   * later page (listing it now would show it ahead of the rooms between).
   */
  function withinLoaded(room) {
    const last = el.rooms.lastElementChild;
    if (!list.hasMore || !last) return true;
    const entry = { dataset: { joined: room.joined ? '1' : '0', activeAt: String(Date.parse(room.activeAt) || 0), roomId: String(room.id) } };
    return byListOrder(entry, last) < 0;
  }

  /**
   * A room list entry changed on the server (roomsChanged, or a mutation's
   * answer): listed in its place, unless a search leaves it out or it
   * belongs to a page not loaded yet.
   */
  function roomChanged(room) {
    const id = String(room.id);
    if (rooms.has(id) || (matchesSearch(room) && withinLoaded(room))) upsertRoom(room);
    renderRoomsFooter();
    if (view && view.roomId === id) {
      view.room = room;
      renderRoomHeader();
      if (room.unreadCount > 0) markRead();
    }
  }

  let stopRoomsChanged = null;
  let roomsChangedRetry = null;

  /** Follows the caller's room list live while signed in (roomsChanged needs a token). */
  function followRoomList() {
    clearTimeout(roomsChangedRetry);
    if (stopRoomsChanged) stopRoomsChanged();
    stopRoomsChanged = null;
    if (myId() === null) return;
    const retry = (delay) => {
      roomsChangedRetry = setTimeout(followRoomList, delay);
    };
    stopRoomsChanged = client.subscribe(ROOMS_CHANGED_SUBSCRIPTION, {
      next: (data) => {
        if (data && data.roomsChanged) roomChanged(data.roomsChanged);
      },
      error: (err) => {
        console.warn('switchboard: room list updates failed', err);
        retry(RETRY_DELAY);
      },
      complete: () => retry(1000), // the server ended it (it should not): follow again
    });
  }

  // ---- The open room --------------------------------------------------------

  /**
   * The open room's state, replaced whenever another room opens. Async work
   * checks `v === view` when it resumes and drops its result otherwise.
   */
  let view = null;

  function newView(roomId, room) {
    return {
      roomId,
      /** The room as last heard of (it may leave the list, which a search filters). */
      room,
      /** Message position (seq, a decimal string) → <li>, for every message shown. */
      items: new Map(),
      /** The newest message shown: its seq and its id (the `after` to resume from). */
      lastSeq: null,
      lastId: null,
      /** Cursor of the oldest message shown, and whether older ones exist. */
      startCursor: null,
      hasPrevious: false,
      loaded: false,
      loading: false,
      /** User id → {name, timer}, for the members typing now. */
      typists: new Map(),
      /** Undo functions of the room's subscriptions, and its pending timers. */
      stops: [],
      timers: [],
    };
  }

  function openDefaultRoom() {
    const general = [...rooms.values()].find((e) => !e.room.direct && e.room.name === 'general');
    const first = general || rooms.get(el.rooms.firstElementChild?.dataset.roomId);
    if (first) openRoom(first.button.dataset.roomId);
  }

  /** Opens a room: its latest history, then its live messages, presence and typing. */
  function openRoom(id) {
    if (!rooms.has(id)) return;
    if (view && view.roomId === id) return;
    closeRoom();
    const v = newView(id, rooms.get(id).room);
    view = v;
    el.room.dataset.roomId = id;
    el.room.dataset.state = 'loading';
    renderRoomEntry(rooms.get(id));
    renderRoomHeader();
    renderCompose();
    loadLatest(v);
  }

  /** Leaves the open room: its streams stop and its panel empties. */
  function closeRoom() {
    if (!view) return;
    stopTyping();
    const v = view;
    view = null;
    for (const stop of v.stops) stop();
    for (const timer of v.timers) clearTimeout(timer);
    for (const typist of v.typists.values()) clearTimeout(typist.timer);
    el.messages.replaceChildren();
    el.onlineList.replaceChildren();
    el.onlineCount.textContent = '0';
    el.typing.textContent = '';
    el.jumpLatest.hidden = true;
    showMessage(el.messageError, '');
    el.room.dataset.state = 'closed';
    delete el.room.dataset.roomId;
    renderCompose();
    const entry = rooms.get(v.roomId);
    if (entry) renderRoomEntry(entry);
    renderRoomHeader();
    renderHistoryState();
  }

  /** The open room's stream or history says it no longer exists for this caller. */
  function roomGone(v) {
    if (v !== view) return;
    closeRoom();
    const entry = rooms.get(v.roomId);
    if (entry) {
      entry.li.remove();
      rooms.delete(v.roomId);
    }
    loadRooms(); // opens another
  }

  function renderRoomHeader() {
    const room = view && view.room;
    el.roomTitle.textContent = room ? room.name : 'No room open';
    el.roomKind.textContent = room ? (room.direct ? 'Direct conversation' : 'Public room') : '';
  }

  function renderHistoryState() {
    const v = view;
    el.loadOlder.hidden = !v || !v.loaded || !v.hasPrevious;
    el.loadOlder.disabled = Boolean(v && v.loading);
    el.loadOlder.textContent = v && v.loading ? 'Loading…' : 'Load older messages';
    el.messagesLoading.hidden = !v || v.loaded;
    el.messagesEmpty.hidden = !v || !v.loaded || v.items.size > 0;
  }

  /** The position of a message in its room, from its id ("room:seq"). */
  function messageSeq(id) {
    const s = String(id ?? '');
    return normaliseId(s.slice(s.lastIndexOf(':') + 1));
  }

  /**
   * Shows a message once, in its place (oldest first, by position), however
   * it arrived: a history page, live, replayed, or the answer to our own
   * post. Returns whether it was new.
   */
  function addMessage(v, message, { live = false } = {}) {
    const seq = messageSeq(message && message.id);
    if (seq === null) {
      console.warn('switchboard: message with an unexpected id ignored', message);
      return false;
    }
    if (v.items.has(seq)) return false;

    const li = renderPost(message, String(message.id), 'chat-msg');
    li.dataset.seq = seq;
    li.dataset.authorId = message.author ? String(message.author.id) : '';
    li.classList.toggle('is-mine', li.dataset.authorId === myId());
    if (live) flash(li);
    insertSorted(el.messages, li, (a, b) => compareIds(a.dataset.seq, b.dataset.seq));

    v.items.set(seq, li);
    if (v.lastSeq === null || compareIds(seq, v.lastSeq) > 0) {
      v.lastSeq = seq;
      v.lastId = String(message.id);
    }
    return true;
  }

  /** Loads one page of history, older than `before` (the newest page when null). */
  async function loadPage(v, before) {
    const data = await client.query(MESSAGES_QUERY, { roomId: v.roomId, last: HISTORY_PAGE, before });
    if (v !== view) return;
    const page = data.messages;
    for (const edge of page.edges) addMessage(v, edge.node);
    if (page.edges.length > 0) v.startCursor = page.pageInfo.startCursor;
    v.hasPrevious = Boolean(page.pageInfo.hasPreviousPage && v.startCursor);
  }

  async function loadLatest(v) {
    v.loading = true;
    renderHistoryState();
    try {
      await loadPage(v, null);
      if (v !== view) return;
      v.loaded = true;
      showMessage(el.error, '');
      renderHistoryState();
      scrollToBottom();
      followRoom(v);
      markRead({ force: true });
      el.room.dataset.state = 'live';
    } catch (err) {
      if (v !== view) return;
      if (err.code === 'NOT_FOUND') {
        roomGone(v);
        return;
      }
      console.error('switchboard: loading messages failed', err);
      showMessage(el.error, `Couldn’t load the messages: ${sentence(err.message)} Retrying…`);
      v.timers.push(setTimeout(() => v === view && loadLatest(v), RETRY_DELAY));
    } finally {
      if (v === view) {
        v.loading = false;
        renderHistoryState();
      }
    }
  }

  /** Scroll-back: loads the page before the oldest message shown, keeping the view still. */
  async function loadOlder() {
    const v = view;
    if (!v || !v.loaded || v.loading || !v.hasPrevious) return;
    v.loading = true;
    renderHistoryState();
    // Keep the message that is on top now where it is on screen.
    const anchor = el.messages.firstElementChild;
    const anchorTop = anchor ? anchor.offsetTop : 0;
    try {
      await loadPage(v, v.startCursor);
      if (v === view && anchor) el.scroller.scrollTop += anchor.offsetTop - anchorTop;
    } catch (err) {
      if (v === view) showMessage(el.error, `Couldn’t load older messages: ${sentence(err.message)}`);
    } finally {
      if (v === view) {
        v.loading = false;
        renderHistoryState();
      }
    }
  }

  const isNearBottom = () =>
    el.scroller.scrollHeight - el.scroller.scrollTop - el.scroller.clientHeight < SCROLL_SLACK;

  function scrollToBottom() {
    el.scroller.scrollTop = el.scroller.scrollHeight;
    el.jumpLatest.hidden = true;
  }

  /**
   * A message arrived live (or as the answer to our own post). The history
   * follows it if the reader was at the bottom; otherwise a button offers to
   * jump there.
   */
  function messageArrived(v, message, { own = false } = {}) {
    const follow = own || isNearBottom();
    if (!addMessage(v, message, { live: true })) return;
    renderHistoryState();
    if (follow) scrollToBottom();
    else el.jumpLatest.hidden = false;

    const entry = rooms.get(v.roomId);
    if (entry && v.lastId === String(message.id)) {
      upsertRoom({ ...entry.room, lastMessage: message, activeAt: message.createdAt, joined: entry.room.joined || own });
    }
    // Sending ends the author's indicator; the server says so too, but the
    // two streams are not ordered with each other.
    if (message.author) endTyping(v, String(message.author.id));
    // Posting marks the room read for its author already.
    if (!own) markRead();
  }

  /**
   * Subscribes to one of the open room's streams for as long as the room
   * stays open. The client resubscribes after every reconnect (calling
   * `variables` again); here a failed or ended stream is followed again
   * after a pause, unless the room is gone for this caller.
   */
  function follow(v, what, query, variables, next) {
    let stop = () => {};
    const retry = (err) => {
      if (v !== view) return;
      if (err && err.code === 'NOT_FOUND') {
        roomGone(v);
        return;
      }
      console.warn(`switchboard: the room's ${what} stopped`, err);
      v.timers.push(setTimeout(() => v === view && start(), err ? RETRY_DELAY : 1000));
    };
    const start = () => {
      stop = client.subscribe(query, {
        variables,
        next: (data) => {
          if (v === view && data) next(data);
        },
        error: retry,
        complete: () => retry(null),
      });
    };
    start();
    v.stops.push(() => stop());
  }

  function followRoom(v) {
    // Resume after the newest message shown, so that a reconnect replays
    // exactly what was missed; "0" (from the start) when the room was empty.
    follow(v, 'messages', MESSAGE_ADDED_SUBSCRIPTION, () => ({ roomId: v.roomId, after: v.lastId ?? '0' }),
      (data) => data.messageAdded && messageArrived(v, data.messageAdded));
    follow(v, 'online list', PRESENCE_SUBSCRIPTION, { roomId: v.roomId },
      (data) => data.presence && renderOnline(data.presence.users, data.presence.count));
    follow(v, 'typing indicators', TYPING_SUBSCRIPTION, { roomId: v.roomId },
      (data) => data.typing && typingEvent(v, data.typing));
  }

  // ---- Read marks -----------------------------------------------------------

  let marking = false;
  let markAgain = false;

  /**
   * Marks the open room read: always when it opens (force), otherwise only
   * while its messages count as read (see readsOpenRoom). Calls made while
   * one is on its way are folded into one more call after it.
   */
  function markRead({ force = false } = {}) {
    if (!view || myId() === null) return;
    if (!force && !readsOpenRoom()) return;
    if (marking) {
      markAgain = true;
      return;
    }
    marking = true;
    client
      .query(MARK_ROOM_READ_MUTATION, { roomId: view.roomId })
      .then((data) => {
        if (data && data.markRoomRead) roomChanged(data.markRoomRead);
      })
      .catch((err) => {
        console.warn('switchboard: markRoomRead failed', err);
        if (err.code === 'UNAUTHENTICATED') onUnauthenticated(`${sentence(err.message)} Sign in again to chat.`);
      })
      .finally(() => {
        marking = false;
        if (markAgain) {
          markAgain = false;
          markRead({ force: true }); // the condition held when it was asked for
        }
      });
  }

  // A hidden page leaves messages unread; coming back reads the open room.
  document.addEventListener('visibilitychange', () => {
    if (!view) return;
    const entry = rooms.get(view.roomId);
    if (entry) renderRoomEntry(entry);
    if (view.room && view.room.unreadCount > 0) markRead();
  });

  // ---- Presence and typing --------------------------------------------------

  /** Shows the first users online (the page asks for 50) and how many there are. */
  function renderOnline(users, count) {
    const me = myId();
    const more = count - users.length;
    el.onlineList.replaceChildren(
      ...users.map((user) => {
        const li = document.createElement('li');
        li.className = 'online-user';
        li.dataset.userId = String(user.id);
        li.textContent = user.name;
        if (String(user.id) === me) {
          li.classList.add('is-me');
          li.title = 'You';
        }
        return li;
      }),
      ...(more > 0 ? [Object.assign(document.createElement('li'), { className: 'online-more', textContent: `and ${more} more` })] : []),
    );
    el.onlineCount.textContent = String(count);
  }

  /** "Alice is typing…", "Alice and Bob are typing…", "Alice, Bob and 2 others are typing…". */
  function typingText(names) {
    switch (names.length) {
      case 0:
        return '';
      case 1:
        return `${names[0]} is typing…`;
      case 2:
        return `${names[0]} and ${names[1]} are typing…`;
      case 3:
        return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
      default:
        return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
    }
  }

  function renderTyping(v) {
    const names = [...v.typists.values()].map((typist) => typist.name);
    el.typing.textContent = typingText(names);
    el.typing.dataset.count = String(names.length);
  }

  function endTyping(v, userId) {
    const typist = v.typists.get(userId);
    if (!typist) return;
    clearTimeout(typist.timer);
    v.typists.delete(userId);
    renderTyping(v);
  }

  /**
   * How long to keep an indicator when no end comes: until its expiresAt
   * plus a margin. The server sends the end itself, so this only covers a
   * lost event; a wrong local clock is bounded to a sensible range.
   */
  function typingFallback(expiresAt) {
    const left = Date.parse(expiresAt) - Date.now();
    return (Number.isFinite(left) ? Math.min(Math.max(left, 1000), 60000) : 6000) + 2000;
  }

  function typingEvent(v, event) {
    const userId = String(event.user.id);
    endTyping(v, userId);
    if (!event.typing) return;
    const timer = setTimeout(() => endTyping(v, userId), typingFallback(event.expiresAt));
    v.typists.set(userId, { name: event.user.name, timer });
    renderTyping(v);
  }

  /** Where and when our last setTyping(true) went, while the user types. */
  const typing = { roomId: null, sentAt: 0 };

  function sendTyping(roomId, on) {
    client
      .query(SET_TYPING_MUTATION, { roomId, typing: on })
      .catch((err) => console.warn('switchboard: setTyping failed', err));
  }

  /**
   * The message box changed. While it holds text, tell the room we type,
   * again every TYPING_REPEAT ms so the indicator does not expire; when it
   * is emptied, say we stopped.
   */
  function noteTyping() {
    if (!view || myId() === null) return;
    if (el.messageText.value.trim() === '') {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (typing.roomId === view.roomId && now - typing.sentAt < TYPING_REPEAT) return;
    typing.roomId = view.roomId;
    typing.sentAt = now;
    sendTyping(view.roomId, true);
  }

  /** Ends our indicator; notify false when the server ends it itself (on send). */
  function stopTyping({ notify = true } = {}) {
    const roomId = typing.roomId;
    typing.roomId = null;
    typing.sentAt = 0;
    if (roomId !== null && notify && myId() !== null) sendTyping(roomId, false);
  }

  // ---- Writing --------------------------------------------------------------

  let sending = false;

  function renderCompose() {
    const signedIn = myId() !== null;
    el.messageForm.hidden = !signedIn;
    el.signinHint.hidden = signedIn;
    el.messageText.disabled = !signedIn || !view;
    el.send.disabled = !signedIn || !view || sending;
    el.roomForm.hidden = !signedIn;
    el.peopleForm.hidden = !signedIn;
  }

  async function sendMessage() {
    const v = view;
    const text = el.messageText.value;
    if (!v || myId() === null || sending || text.trim() === '') return;
    sending = true;
    renderCompose();
    showMessage(el.messageError, '');
    try {
      const data = await client.write(POST_MESSAGE_MUTATION, { roomId: v.roomId, text });
      stopTyping({ notify: false }); // postMessage ended it
      // Keep anything typed while the message was on its way (a stray
      // line break does not count).
      if (el.messageText.value.trim() === text.trim()) el.messageText.value = '';
      if (v === view) messageArrived(v, data.postMessage, { own: true });
    } catch (err) {
      reportError(el.messageError, 'Not sent', err);
    } finally {
      sending = false;
      renderCompose();
      if (myId() !== null) el.messageText.focus();
    }
  }

  async function createRoom() {
    el.createRoom.disabled = true;
    showMessage(el.roomError, '');
    try {
      const data = await client.query(CREATE_ROOM_MUTATION, { name: el.roomName.value });
      el.roomName.value = '';
      upsertRoom(data.createRoom); // listed even if a search would leave it out
      openRoom(String(data.createRoom.id));
    } catch (err) {
      reportError(el.roomError, 'Not created', err);
    } finally {
      el.createRoom.disabled = false;
    }
  }

  // ---- People ---------------------------------------------------------------

  let searchTimer = null;
  let searchSeq = 0; // answers to older searches are dropped

  function clearPeople() {
    clearTimeout(searchTimer);
    searchSeq += 1;
    el.peopleResults.replaceChildren();
    el.peopleEmpty.hidden = true;
    showMessage(el.peopleError, '');
  }

  async function searchPeople() {
    clearTimeout(searchTimer);
    const search = el.peopleSearch.value.trim();
    if (search === '' || myId() === null) {
      clearPeople();
      return;
    }
    const seq = ++searchSeq;
    try {
      const data = await client.query(USERS_QUERY, { search, first: PEOPLE_RESULTS });
      if (seq !== searchSeq) return;
      showMessage(el.peopleError, '');
      el.peopleResults.replaceChildren(...data.users.map(renderPerson));
      el.peopleEmpty.hidden = data.users.length > 0;
    } catch (err) {
      if (seq === searchSeq) reportError(el.peopleError, 'Search failed', err);
    }
  }

  /** A search result: the name, and the id to tell people of the same name apart. */
  function renderPerson(user) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'person';
    button.dataset.userId = String(user.id);
    const name = document.createElement('span');
    name.className = 'person-name';
    name.textContent = user.name;
    const id = document.createElement('span');
    id.className = 'person-id';
    id.textContent = `#${user.id}`;
    button.append(name, id);
    button.addEventListener('click', () => openDirectRoom(String(user.id)));
    li.append(button);
    return li;
  }

  async function openDirectRoom(userId) {
    showMessage(el.peopleError, '');
    try {
      const data = await client.query(OPEN_DIRECT_ROOM_MUTATION, { userId });
      el.peopleSearch.value = '';
      clearPeople();
      upsertRoom(data.openDirectRoom); // listed even if a search would leave it out
      openRoom(String(data.openDirectRoom.id));
      el.messageText.focus();
    } catch (err) {
      reportError(el.peopleError, 'Couldn’t open the conversation', err);
    }
  }

  // ---- Events ---------------------------------------------------------------

  el.messageForm.addEventListener('submit', (event) => {
    event.preventDefault();
    sendMessage();
  });

  // Enter sends; Shift+Enter starts a new line.
  enterSubmits(el.messageText, el.messageForm);

  el.messageText.addEventListener('input', () => {
    noteTyping();
    if (!el.messageError.hidden) showMessage(el.messageError, '');
  });

  el.roomForm.addEventListener('submit', (event) => {
    event.preventDefault();
    createRoom();
  });

  el.peopleForm.addEventListener('submit', (event) => {
    event.preventDefault();
    searchPeople();
  });

  el.peopleSearch.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(searchPeople, SEARCH_DELAY);
  });

  el.roomSearch.addEventListener('input', () => {
    clearTimeout(roomSearchTimer);
    roomSearchTimer = setTimeout(searchRooms, SEARCH_DELAY);
  });

  el.roomSearchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    searchRooms();
  });

  el.moreRooms.addEventListener('click', loadMoreRooms);

  // Scrolling to the end of the room list loads its next page.
  el.roomsScroll.addEventListener('scroll', () => {
    if (scrolledToRoomsEnd()) loadMoreRooms();
  });

  el.loadOlder.addEventListener('click', loadOlder);
  el.jumpLatest.addEventListener('click', scrollToBottom);

  el.scroller.addEventListener('scroll', () => {
    if (el.scroller.scrollTop < SCROLL_SLACK) loadOlder();
    if (isNearBottom()) el.jumpLatest.hidden = true;
  });

  // ---- Session and connection -----------------------------------------------

  let userId = myId();

  /** Follows a sign-in or sign-out (or a session that another tab changed). */
  function sessionChanged() {
    renderCompose();
    const id = myId();
    if (id === userId) return; // same user (a refreshed name, say)
    userId = id;
    stopTyping({ notify: false }); // the old identity's indicator expires by itself
    clearPeople();
    followRoomList();
    // Presence restarts with the new identity when the client reconnects;
    // what is "mine" changes now.
    for (const li of el.messages.children) li.classList.toggle('is-mine', li.dataset.authorId === id);
    loadRooms();
  }

  let connectedBefore = false;

  function connectionChanged(state) {
    if (state === 'connected') {
      // The list's live updates are not replayed: catch up on what changed
      // while the page was offline (needless only on the very first connection).
      if (connectedBefore || !list.loaded) loadRooms();
      connectedBefore = true;
    } else if (view) {
      // Nobody's indicator can be trusted while offline; the typing stream
      // sends the ones still on when it resumes.
      for (const id of [...view.typists.keys()]) endTyping(view, id);
    }
  }

  renderCompose();
  renderRoomHeader();
  renderHistoryState();
  followRoomList();
  loadRooms();

  return { sessionChanged, connectionChanged };
}
