// Apollo Client against Switchboard: a split link (HTTP for queries and
// mutations, GraphQLWsLink over graphql-transport-ws for subscriptions),
// the cache normalising statuses by id whether a query or a subscription
// brought them, and a chat room followed live.
//
//   node dist/apollo.js --url http://localhost:8080/graphql --name Ada
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import { firstValueFrom, take, toArray } from 'rxjs';
import WebSocket from 'ws';

import { before, CreateRoom, Feed, MessageAdded, options, PostMessage, PostStatus, report, SignIn, socketURL, StatusPosted } from './common.js';

const opts = options(process.argv.slice(2));
let token = ''; // set by sign-in; both links read it for every request

const http = new HttpLink({
  uri: opts.url,
  headers: {},
  fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) } }),
});
const socket = createClient({
  url: socketURL(opts.url),
  webSocketImpl: WebSocket, // Node; a browser has its own
  lazy: true,
  connectionParams: () => (token ? { authorization: `Bearer ${token}` } : {}),
});
const client = new ApolloClient({
  link: ApolloLink.split(
    ({ query }) => {
      const def = getMainDefinition(query);
      return def.kind === 'OperationDefinition' && def.operation === 'subscription';
    },
    new GraphQLWsLink(socket),
    http,
  ),
  cache: new InMemoryCache(),
});

async function main(): Promise<void> {
  const signIn = await client.mutate({ mutation: SignIn, variables: { name: opts.name } });
  const me = signIn.data!.signIn;
  token = me.token;
  report('signed in', { user: me.user.name });

  const first = await client.mutate({ mutation: PostStatus, variables: { text: 'hello from Apollo Client' } });
  const status = first.data!.postStatus;
  report('posted', { id: status.id, text: status.text });

  const feed = await client.query({ query: Feed, variables: { first: 10 }, fetchPolicy: 'network-only' });
  report('feed', { ids: feed.data!.statuses.edges.map((e) => e.node.id) });

  // From just before the status posted above: it is replayed, then one
  // posted meanwhile follows, live or replayed, in order either way.
  const events = firstValueFrom(client.subscribe({ query: StatusPosted, variables: { after: before(status.id) } }).pipe(take(2), toArray()));
  const live = await client.mutate({ mutation: PostStatus, variables: { text: 'live through GraphQLWsLink' } });
  const received = (await events).map((e) => e.data!.statusPosted);
  report('received', { ids: received.map((s) => s.id), texts: received.map((s) => s.text) });

  // One cache record per status, whichever operation brought it.
  const records = Object.keys(client.cache.extract() as Record<string, unknown>).filter((k) => k.startsWith('Status:'));
  report('cache', { statuses: records.sort(), liveId: live.data!.postStatus.id });

  // A chat room followed live.
  const room = (await client.mutate({ mutation: CreateRoom, variables: { name: `${opts.name}'s room` } })).data!.createRoom;
  const messages = firstValueFrom(client.subscribe({ query: MessageAdded, variables: { roomId: room.id, after: '0' } }));
  await client.mutate({ mutation: PostMessage, variables: { roomId: room.id, text: 'hi, room' } });
  const message = (await messages).data!.messageAdded;
  report('message', { room: room.name, text: message.text, author: message.author.name });
}

main()
  .then(() => report('done'))
  .catch((err: unknown) => {
    report('failed', { error: String(err) });
    process.exitCode = 1;
  })
  .finally(() => socket.dispose());
