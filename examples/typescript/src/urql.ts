// urql against Switchboard: fetchExchange for queries and mutations,
// subscriptionExchange over graphql-ws (graphql-transport-ws) for
// subscriptions, and a chat room followed live.
//
//   node dist/urql.js --url http://localhost:8080/graphql --name Bo
import { Client, fetchExchange, type OperationResult, subscriptionExchange } from '@urql/core';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { before, CreateRoom, Feed, MessageAdded, options, PostMessage, PostStatus, report, SignIn, socketURL, StatusPosted } from './common.js';

const opts = options(process.argv.slice(2));
let token = ''; // set by sign-in; both exchanges read it for every request

const socket = createClient({
  url: socketURL(opts.url),
  webSocketImpl: WebSocket, // Node; a browser has its own
  connectionParams: () => (token ? { authorization: `Bearer ${token}` } : {}),
});
const client = new Client({
  url: opts.url,
  preferGetMethod: false,
  fetchOptions: () => (token ? { headers: { authorization: `Bearer ${token}` } } : {}),
  exchanges: [
    fetchExchange,
    subscriptionExchange({
      forwardSubscription(request) {
        const input = { ...request, query: request.query ?? '' };
        return {
          subscribe(sink) {
            const unsubscribe = socket.subscribe(input, sink);
            return { unsubscribe };
          },
        };
      },
    }),
  ],
});

/** The data of the first count results of a subscription, which then ends. */
function first<T>(source: { subscribe(onResult: (r: OperationResult<T>) => void): { unsubscribe(): void } }, count: number): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const got: T[] = [];
    const sub = source.subscribe((r) => {
      if (r.error) {
        reject(r.error);
      } else if (r.data) {
        got.push(r.data);
      }
      if (got.length === count || r.error) {
        queueMicrotask(() => sub.unsubscribe()); // sub is assigned once subscribe returns
        resolve(got);
      }
    });
  });
}

async function main(): Promise<void> {
  const signIn = await client.mutation(SignIn, { name: opts.name }).toPromise();
  if (signIn.error) throw signIn.error;
  token = signIn.data!.signIn.token;
  report('signed in', { user: signIn.data!.signIn.user.name });

  const posted = await client.mutation(PostStatus, { text: 'hello from urql' }).toPromise();
  if (posted.error) throw posted.error;
  const status = posted.data!.postStatus;
  report('posted', { id: status.id, text: status.text });

  const feed = await client.query(Feed, { first: 10 }, { requestPolicy: 'network-only' }).toPromise();
  if (feed.error) throw feed.error;
  report('feed', { ids: feed.data!.statuses.edges.map((e) => e.node.id) });

  // From just before the status posted above: it is replayed, then one
  // posted meanwhile follows, in order.
  const events = first(client.subscription(StatusPosted, { after: before(status.id) }), 2);
  const live = await client.mutation(PostStatus, { text: 'live through subscriptionExchange' }).toPromise();
  if (live.error) throw live.error;
  const received = (await events).map((d) => d.statusPosted);
  report('received', { ids: received.map((s) => s.id), texts: received.map((s) => s.text) });

  const room = await client.mutation(CreateRoom, { name: `${opts.name}'s room` }).toPromise();
  if (room.error) throw room.error;
  const roomId = room.data!.createRoom.id;
  const messages = first(client.subscription(MessageAdded, { roomId, after: '0' }), 1);
  const sent = await client.mutation(PostMessage, { roomId, text: 'hi, room' }).toPromise();
  if (sent.error) throw sent.error;
  const [message] = await messages;
  report('message', { room: room.data!.createRoom.name, text: message!.messageAdded.text, author: message!.messageAdded.author.name });
}

main()
  .then(() => report('done'))
  .catch((err: unknown) => {
    report('failed', { error: String(err) });
    process.exitCode = 1;
  })
  .finally(() => socket.dispose());
