// What both examples share: their command line, their report (one JSON
// object per line on stdout, which e2e/examples_test.go reads), and the
// operations they run, typed by graphql-codegen (npm run codegen).
import { graphql } from './gql/index.js';

export interface Options {
  url: string; // the GraphQL endpoint, http(s)://host/graphql
  name: string; // the guest name to sign in as
}

export function options(argv: string[]): Options {
  const opts: Options = { url: 'http://localhost:8080/graphql', name: 'TypeScript' };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${argv[i]}`);
    if (argv[i] === '--url') opts.url = value;
    else if (argv[i] === '--name') opts.name = value;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return opts;
}

export function report(step: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ step, ...fields }) + '\n');
}

/** The WebSocket endpoint of an http(s) endpoint. */
export function socketURL(url: string): string {
  return url.replace(/^http/, 'ws');
}

/** The status id just before id (ids are positions), to replay id itself. */
export function before(id: string): string {
  return String(Number(id) - 1);
}

export const SignIn = graphql(`
  mutation SignIn($name: String!) {
    signIn(name: $name) {
      token
      user {
        id
        name
      }
    }
  }
`);

export const PostStatus = graphql(`
  mutation PostStatus($text: String!) {
    postStatus(text: $text) {
      id
      text
      createdAt
      author {
        id
        name
      }
    }
  }
`);

export const Feed = graphql(`
  query Feed($first: Int!) {
    statuses(first: $first) {
      edges {
        node {
          id
          text
          author {
            id
            name
          }
        }
      }
    }
  }
`);

export const StatusPosted = graphql(`
  subscription StatusPosted($after: ID) {
    statusPosted(after: $after) {
      id
      text
      author {
        id
        name
      }
    }
  }
`);

export const CreateRoom = graphql(`
  mutation CreateRoom($name: String!) {
    createRoom(name: $name) {
      id
      name
    }
  }
`);

export const PostMessage = graphql(`
  mutation PostMessage($roomId: ID!, $text: String!) {
    postMessage(roomId: $roomId, text: $text) {
      id
    }
  }
`);

export const MessageAdded = graphql(`
  subscription MessageAdded($roomId: ID!, $after: ID) {
    messageAdded(roomId: $roomId, after: $after) {
      id
      roomId
      text
      author {
        name
      }
    }
  }
`);
