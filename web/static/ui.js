// Small DOM helpers shared by the page's panels. Everything that comes from
// the server is set with textContent, never parsed as HTML.

import { errorFromList } from './client.js';

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/**
 * Makes Enter submit form from textarea, and Shift+Enter start a new line.
 * Some input paths (automation, some keyboards) deliver the Enter's line
 * break as an input event of its own even when the keydown was cancelled,
 * possibly after the form was sent: a line break right after a plain Enter
 * is dropped too.
 */
export function enterSubmits(textarea, form) {
  let plainEnter = false;
  textarea.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    plainEnter = !event.shiftKey && !event.isComposing;
    if (plainEnter) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  textarea.addEventListener('beforeinput', (event) => {
    if (plainEnter && (event.inputType === 'insertLineBreak' || event.inputType === 'insertParagraph')) {
      event.preventDefault();
    }
    plainEnter = false;
  });
}

/** Shows text in a message element, or hides it when text is empty. */
export function showMessage(node, text) {
  node.textContent = text;
  node.hidden = text === '';
}

/** Ends a message with a full stop unless it already has punctuation. */
export function sentence(text) {
  const t = String(text ?? '').trim();
  if (t === '') return '';
  return /[.!?…]$/.test(t) ? t : t + '.';
}

/**
 * Compares two ids (positive integers in decimal strings) numerically, without
 * converting them to numbers, so they may exceed 2^53.
 */
export function compareIds(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A decimal id without leading zeros, or null when id is not one. */
export function normaliseId(id) {
  const s = String(id).trim().replace(/^0+(?=\d)/, '');
  return /^\d+$/.test(s) ? s : null;
}

/**
 * Inserts node among parent's children, which are kept sorted by compare
 * (a negative result puts its first argument first), after any equal ones.
 */
export function insertSorted(parent, node, compare) {
  const children = parent.children;
  let lo = 0;
  let hi = children.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(children[mid], node) <= 0) lo = mid + 1;
    else hi = mid;
  }
  parent.insertBefore(node, children[lo] || null);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: 'numeric',
  minute: '2-digit',
});
const yearDateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: 'numeric',
  minute: '2-digit',
});
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });

/** Formats a date briefly: the time today, the day this year, else the year too. */
function formatTime(date) {
  const now = new Date();
  if (date.toDateString() === now.toDateString()) return timeFormat.format(date);
  if (date.getFullYear() === now.getFullYear()) return dateTimeFormat.format(date);
  return yearDateTimeFormat.format(date);
}

/** A <time> element for an RFC 3339 timestamp, with the full date as its title. */
export function timeElement(value) {
  const time = document.createElement('time');
  time.className = 'time';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    time.textContent = String(value ?? '');
  } else {
    time.dateTime = date.toISOString();
    time.textContent = formatTime(date);
    time.title = fullFormat.format(date);
  }
  return time;
}

/**
 * Renders a post (a status or a chat message: text, createdAt and author) as
 * an <li> of class className with data-id set to id: a header with the
 * author's name and the time, then the text.
 */
export function renderPost(post, id, className) {
  const li = document.createElement('li');
  li.className = className;
  li.dataset.id = id;

  const header = document.createElement('div');
  header.className = 'post-header';

  const author = document.createElement('span');
  author.className = 'author';
  author.textContent = post.author ? post.author.name : 'Unknown';

  header.append(author, timeElement(post.createdAt));

  const text = document.createElement('p');
  text.className = 'text';
  text.textContent = post.text;

  li.append(header, text);
  return li;
}

/** Highlights a freshly arrived list item briefly (see .is-new in style.css). */
export function flash(node) {
  node.classList.add('is-new');
  node.addEventListener('animationend', () => node.classList.remove('is-new'), { once: true });
}

const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hourCycle: 'h23',
});

/** A date's time of day to the second ("14:05:09"), or '' for an invalid one. */
export function formatClock(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : clockFormat.format(date);
}

/** The message of a server error with its code first: "FORBIDDEN: …". */
export function errorText(err) {
  const message = sentence(err && err.message) || 'Something went wrong.';
  return err && err.code ? `${err.code}: ${message}` : message;
}

/** A new element with this class (if any) and text (as textContent, if any). */
export function element(tag, className = '', text = null) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== null) node.textContent = text;
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element with these attributes. */
export function svgElement(name, attributes = {}) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

/**
 * The claims of a JWT (its middle part, base64url JSON), or null when token
 * is not one. They are not verified: the page reads them only to decide
 * what to show; the server checks the token on every request.
 */
export function tokenClaims(token) {
  const part = String(token ?? '').split('.')[1];
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '=')), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/** The roles a token carries (see tokenClaims), as a list of strings. */
export function tokenRoles(token) {
  const roles = tokenClaims(token)?.roles;
  return Array.isArray(roles) ? roles.filter((r) => typeof r === 'string') : [];
}

/**
 * Subscribes through client for as long as the returned function is not
 * called: the client resubscribes after every reconnect (calling
 * `variables` again, if it is a function), and here a stream that fails or
 * ends is followed again after a pause. `failed` hears of every failure
 * first (a GraphQLError with its `code`, also when the server refused the
 * subscription with a result that has errors and no data, such as
 * UNAUTHENTICATED); returning true from it gives up.
 *
 * @returns {() => void} stop
 */
export function followStream(client, query, { variables, next, failed = () => false, retryDelay = 5000 }) {
  let stop = () => {};
  let timer = null;
  let stopped = false;
  let refused = null; // the errors of a result without data: the stream ends with them
  const retry = (err) => {
    if (stopped) return;
    if (err) console.warn('switchboard: a live stream stopped', err);
    if (failed(err)) return;
    timer = setTimeout(start, err ? retryDelay : 1000);
  };
  const start = () => {
    if (stopped) return;
    refused = null;
    stop = client.subscribe(query, {
      variables,
      next: (data, result) => {
        if (stopped) return;
        if (data) next(data);
        else if (Array.isArray(result?.errors) && result.errors.length > 0) refused = errorFromList(result.errors);
      },
      error: retry,
      complete: () => retry(refused),
    });
  };
  start();
  return () => {
    stopped = true;
    clearTimeout(timer);
    stop();
  };
}
