/* eslint-disable */
import * as types from './graphql.js';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  mutation SignIn($name: String!) {\n    signIn(name: $name) {\n      token\n      user {\n        id\n        name\n      }\n    }\n  }\n": typeof types.SignInDocument,
    "\n  mutation PostStatus($text: String!) {\n    postStatus(text: $text) {\n      id\n      text\n      createdAt\n      author {\n        id\n        name\n      }\n    }\n  }\n": typeof types.PostStatusDocument,
    "\n  query Feed($first: Int!) {\n    statuses(first: $first) {\n      edges {\n        node {\n          id\n          text\n          author {\n            id\n            name\n          }\n        }\n      }\n    }\n  }\n": typeof types.FeedDocument,
    "\n  subscription StatusPosted($after: ID) {\n    statusPosted(after: $after) {\n      id\n      text\n      author {\n        id\n        name\n      }\n    }\n  }\n": typeof types.StatusPostedDocument,
    "\n  mutation CreateRoom($name: String!) {\n    createRoom(name: $name) {\n      id\n      name\n    }\n  }\n": typeof types.CreateRoomDocument,
    "\n  mutation PostMessage($roomId: ID!, $text: String!) {\n    postMessage(roomId: $roomId, text: $text) {\n      id\n    }\n  }\n": typeof types.PostMessageDocument,
    "\n  subscription MessageAdded($roomId: ID!, $after: ID) {\n    messageAdded(roomId: $roomId, after: $after) {\n      id\n      roomId\n      text\n      author {\n        name\n      }\n    }\n  }\n": typeof types.MessageAddedDocument,
};
const documents: Documents = {
    "\n  mutation SignIn($name: String!) {\n    signIn(name: $name) {\n      token\n      user {\n        id\n        name\n      }\n    }\n  }\n": types.SignInDocument,
    "\n  mutation PostStatus($text: String!) {\n    postStatus(text: $text) {\n      id\n      text\n      createdAt\n      author {\n        id\n        name\n      }\n    }\n  }\n": types.PostStatusDocument,
    "\n  query Feed($first: Int!) {\n    statuses(first: $first) {\n      edges {\n        node {\n          id\n          text\n          author {\n            id\n            name\n          }\n        }\n      }\n    }\n  }\n": types.FeedDocument,
    "\n  subscription StatusPosted($after: ID) {\n    statusPosted(after: $after) {\n      id\n      text\n      author {\n        id\n        name\n      }\n    }\n  }\n": types.StatusPostedDocument,
    "\n  mutation CreateRoom($name: String!) {\n    createRoom(name: $name) {\n      id\n      name\n    }\n  }\n": types.CreateRoomDocument,
    "\n  mutation PostMessage($roomId: ID!, $text: String!) {\n    postMessage(roomId: $roomId, text: $text) {\n      id\n    }\n  }\n": types.PostMessageDocument,
    "\n  subscription MessageAdded($roomId: ID!, $after: ID) {\n    messageAdded(roomId: $roomId, after: $after) {\n      id\n      roomId\n      text\n      author {\n        name\n      }\n    }\n  }\n": types.MessageAddedDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation SignIn($name: String!) {\n    signIn(name: $name) {\n      token\n      user {\n        id\n        name\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation SignIn($name: String!) {\n    signIn(name: $name) {\n      token\n      user {\n        id\n        name\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation PostStatus($text: String!) {\n    postStatus(text: $text) {\n      id\n      text\n      createdAt\n      author {\n        id\n        name\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation PostStatus($text: String!) {\n    postStatus(text: $text) {\n      id\n      text\n      createdAt\n      author {\n        id\n        name\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Feed($first: Int!) {\n    statuses(first: $first) {\n      edges {\n        node {\n          id\n          text\n          author {\n            id\n            name\n          }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query Feed($first: Int!) {\n    statuses(first: $first) {\n      edges {\n        node {\n          id\n          text\n          author {\n            id\n            name\n          }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription StatusPosted($after: ID) {\n    statusPosted(after: $after) {\n      id\n      text\n      author {\n        id\n        name\n      }\n    }\n  }\n"): (typeof documents)["\n  subscription StatusPosted($after: ID) {\n    statusPosted(after: $after) {\n      id\n      text\n      author {\n        id\n        name\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateRoom($name: String!) {\n    createRoom(name: $name) {\n      id\n      name\n    }\n  }\n"): (typeof documents)["\n  mutation CreateRoom($name: String!) {\n    createRoom(name: $name) {\n      id\n      name\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation PostMessage($roomId: ID!, $text: String!) {\n    postMessage(roomId: $roomId, text: $text) {\n      id\n    }\n  }\n"): (typeof documents)["\n  mutation PostMessage($roomId: ID!, $text: String!) {\n    postMessage(roomId: $roomId, text: $text) {\n      id\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription MessageAdded($roomId: ID!, $after: ID) {\n    messageAdded(roomId: $roomId, after: $after) {\n      id\n      roomId\n      text\n      author {\n        name\n      }\n    }\n  }\n"): (typeof documents)["\n  subscription MessageAdded($roomId: ID!, $after: ID) {\n    messageAdded(roomId: $roomId, after: $after) {\n      id\n      roomId\n      text\n      author {\n        name\n      }\n    }\n  }\n"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;