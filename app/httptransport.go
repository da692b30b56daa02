package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/request"
)

// The response media types of GraphQL over HTTP.
const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
)

// graphQLOverHTTP is the transport of GraphQL over HTTP GET and POST, as the
// GraphQL-over-HTTP specification says, in place of gqlgen's GET and POST
// transports (which answer a malformed or batched body with an INTERNAL
// error and log the body whole, take any charset, and answer an unsupported
// media type or method with a bare "transport not supported").
//
// A request it cannot serve as sent gets a 4xx status and one GraphQL error
// with a message saying what to fix and an extensions.code: BAD_REQUEST
// (400; 405 for another method, or a mutation over GET; 413 for a body over
// the size limit; 415 for a body that is not UTF-8 JSON), or
// PERSISTED_QUERY_NOT_FOUND (404). A document that does not parse or
// validate, or is over the complexity limit, is answered with its GraphQL
// error: 200 for application/json (the specification's advice for that
// legacy media type), 400 for application/graphql-response+json (whose
// responses without data are 4xx). Each refusal is logged at info (a
// persisted-query miss, a normal step of that protocol, at debug) with the
// request id, client, status and code, and never anything the request
// carried. Add it after the WebSocket and OPTIONS transports: it claims
// every request they leave.
type graphQLOverHTTP struct {
	log *slog.Logger
}

var _ graphql.Transport = graphQLOverHTTP{}

// Supports claims every request (see graphQLOverHTTP).
func (graphQLOverHTTP) Supports(*http.Request) bool { return true }

// Do reads the request's parameters, runs the operation they name and
// writes its response, or the refusal of a request it cannot serve.
func (h graphQLOverHTTP) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	h.answer(w, r, exec, responseMediaType(r.Header.Get("Accept")), prepare(r, exec))
}

// preparedRequest is a GraphQL request read and its operation validated:
// the operation's context (rc), or why not (refused: the request could not
// be read; errs: the document does not parse or validate).
type preparedRequest struct {
	params  *graphql.RawParams
	rc      *graphql.OperationContext
	refused *requestError
	errs    gqlerror.List
}

// prepare reads r's parameters and creates its operation's context.
func prepare(r *http.Request, exec graphql.GraphExecutor) preparedRequest {
	start := graphql.Now()
	params, refused := readParams(r)
	if refused != nil {
		return preparedRequest{refused: refused}
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	rc, errs := exec.CreateOperationContext(r.Context(), params)
	return preparedRequest{params: params, rc: rc, errs: errs}
}

// answer runs a prepared request's operation and writes its response as
// media, or the refusal of a request it cannot serve.
func (h graphQLOverHTTP) answer(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, media string, p preparedRequest) {
	ctx := r.Context()
	if p.refused != nil {
		h.refuse(w, r, exec, media, p.refused)
		return
	}
	if p.errs != nil {
		h.refuse(w, r.WithContext(graphql.WithOperationContext(ctx, p.rc)), exec, media,
			&requestError{status: documentErrorStatus(p.errs, media), errs: p.errs})
		return
	}
	if refused := operationRefusal(r.Method, p.rc.Operation.Operation); refused != nil {
		h.refuse(w, r, exec, media, refused)
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, p.rc)
	writeGraphQL(w, media, http.StatusOK, responses(ctx))
}

// requestError is a request refused before its operation ran: the status
// to answer with, the Allow header of a 405, and the errors.
type requestError struct {
	status int
	allow  string
	errs   gqlerror.List
}

// badRequest returns the refusal with status of a request the server
// cannot read: one BAD_REQUEST error saying why.
func badRequest(status int, format string, args ...any) *requestError {
	err := gqlerror.Errorf(format, args...)
	errcode.Set(err, string(models.BadRequest))
	return &requestError{status: status, errs: gqlerror.List{err}}
}

// refuse answers a refused request (through the executor's error
// presenter, which counts the errors by code, and its response
// interceptors) and logs the refusal.
func (h graphQLOverHTTP) refuse(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, media string, refused *requestError) {
	logRefusal(h.log, r, refused.status, refused.errs)
	if refused.allow != "" {
		w.Header().Set("Allow", refused.allow)
	}
	writeRefusal(w, media, refused.status, exec.DispatchError(r.Context(), refused.errs))
}

// logRefusal logs a refused request at info (debug for a persisted-query
// miss) with its client, status and the code of its first error: never a
// message, which may quote the document.
func logRefusal(log *slog.Logger, r *http.Request, status int, errs gqlerror.List) {
	code := ""
	if len(errs) > 0 {
		code, _ = errs[0].Extensions["code"].(string)
	}
	level := slog.LevelInfo
	if code == string(models.PersistedQueryNotFound) {
		level = slog.LevelDebug
	}
	log.Log(r.Context(), level, "request refused", "client", request.ClientAddr(r.Context()),
		"method", r.Method, "status", status, "code", code)
}

// writeRefusal writes resp, the errors of a request refused before its
// operation ran, as writeGraphQL does but without a data entry: the
// GraphQL spec leaves data out when no execution began, and the GraphQL
// over HTTP spec's clients read its absence as a request error (an
// operation that ran and failed has "data": null).
func writeRefusal(w http.ResponseWriter, media string, status int, resp *graphql.Response) {
	writeMedia(w, media, status, refusal(resp))
}

// writeGraphQL writes resp as the response, of media type media, with
// status.
func writeGraphQL(w http.ResponseWriter, media string, status int, resp *graphql.Response) {
	writeMedia(w, media, status, resp)
}

// writeMedia writes v, in JSON, as the response, of media type media, with
// status.
func writeMedia(w http.ResponseWriter, media string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a result that is not JSON fails here, a bug: gqlgen's handler
		// recovers the panic and answers 500, as its own transports do.
		panic(fmt.Errorf("encode the response: %w", err))
	}
	w.Header().Set("Content-Type", media+"; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// responseMediaType picks the response's media type from an Accept header:
// application/graphql-response+json or application/json, whichever the
// client prefers (by q value, then by order); application/json when it
// names neither, accepts anything or sends no Accept at all, as legacy
// clients expect.
func responseMediaType(accept string) string {
	media, _ := acceptedJSON(accept)
	return media
}

// acceptedJSON is responseMediaType, and whether the Accept header names a
// JSON media type (or application/*, */*) with a quality above zero, or is
// empty.
func acceptedJSON(accept string) (string, bool) {
	if strings.TrimSpace(accept) == "" {
		return mediaJSON, true
	}
	best, bestQ := mediaJSON, 0.0
	for mt, q := range request.Accepted(accept) {
		media := mediaJSON
		switch mt {
		case mediaGraphQLResponse:
			media = mediaGraphQLResponse
		case mediaJSON, "application/*", "*/*":
		default:
			continue
		}
		if q < 0 {
			q = 1 // a q that is no number: the type it names is still wanted
		}
		if q > bestQ {
			best, bestQ = media, q
		}
	}
	return best, bestQ > 0
}

// readParams reads the GraphQL request's parameters: from the query string
// of a GET, from the JSON body of a POST. Another method, or parameters it
// cannot read, are refused; so is a request with neither a query nor a
// persisted query's hash.
func readParams(r *http.Request) (*graphql.RawParams, *requestError) {
	var (
		p       *graphql.RawParams
		refused *requestError
	)
	switch r.Method {
	case http.MethodGet:
		p, refused = paramsFromQuery(r.URL.RawQuery)
	case http.MethodPost:
		p, refused = paramsFromBody(r)
	default:
		refused = badRequest(http.StatusMethodNotAllowed, "GraphQL over HTTP takes GET (queries) and POST; subscriptions use a WebSocket")
		refused.allow = "GET, POST, OPTIONS"
	}
	if refused != nil {
		return nil, refused
	}
	if p.Query == "" && p.Extensions["persistedQuery"] == nil {
		return nil, badRequest(http.StatusBadRequest, "the request has no query")
	}
	return p, nil
}

// paramsFromQuery reads a GET's parameters: query and operationName, and
// variables and extensions as JSON objects.
func paramsFromQuery(raw string) (*graphql.RawParams, *requestError) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest(http.StatusBadRequest, "the query string is malformed")
	}
	p := &graphql.RawParams{Query: q.Get("query"), OperationName: q.Get("operationName")}
	for name, dst := range map[string]*map[string]any{"variables": &p.Variables, "extensions": &p.Extensions} {
		if s := q.Get(name); s != "" {
			dec := json.NewDecoder(strings.NewReader(s))
			dec.UseNumber()
			if dec.Decode(dst) != nil {
				return nil, badRequest(http.StatusBadRequest, "%s must be a JSON object", name)
			}
		}
	}
	return p, nil
}

// paramsFromBody reads a POST's parameters from its body, which must be
// one JSON object in UTF-8 (Content-Type application/json, with no charset
// or UTF-8) within the size limit.
func paramsFromBody(r *http.Request) (*graphql.RawParams, *requestError) {
	mt, mtParams, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != mediaJSON {
		return nil, badRequest(http.StatusUnsupportedMediaType, "send the request body as JSON, with Content-Type: application/json")
	}
	if cs, ok := mtParams["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return nil, badRequest(http.StatusUnsupportedMediaType, "the request body must be UTF-8")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, bodyTooLarge(tooLarge.Limit)
		}
		return nil, badRequest(http.StatusBadRequest, "the request body could not be read")
	}
	return decodeParams(body)
}

// bodyTooLarge is the refusal of a body over limit bytes.
func bodyTooLarge(limit int64) *requestError {
	return badRequest(http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", limit)
}

// paramTypes are the JSON types of a request body's parameters, for the
// message refusing one of another type.
var paramTypes = map[string]string{
	"query": "a string", "operationName": "a string", "variables": "an object", "extensions": "an object",
}

// decodeParams decodes a POST body: one JSON object. The refusals say what
// is wrong (an array: a batch, which is not supported; a parameter of the
// wrong type; the byte where the JSON breaks) but never quote the body.
func decodeParams(body []byte) (*graphql.RawParams, *requestError) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return nil, badRequest(http.StatusBadRequest, `the request body is empty: send a JSON object such as {"query": "{ me { id } }"}`)
	case trimmed[0] == '[':
		return nil, badRequest(http.StatusBadRequest, "batched requests (a JSON array of operations) are not supported: send one operation per request")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	p := &graphql.RawParams{}
	err := dec.Decode(p)
	if err == nil {
		if _, err := dec.Token(); err != io.EOF {
			return nil, badRequest(http.StatusBadRequest, "the request body holds more than one JSON value")
		}
		return p, nil
	}
	syntaxErr, isSyntax := errors.AsType[*json.SyntaxError](err)
	typeErr, isType := errors.AsType[*json.UnmarshalTypeError](err)
	switch {
	case isSyntax:
		return nil, badRequest(http.StatusBadRequest, "the request body is not valid JSON (at byte %d)", syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, badRequest(http.StatusBadRequest, "the request body is not valid JSON (it ends too early)")
	case isType && paramTypes[typeErr.Field] != "":
		return nil, badRequest(http.StatusBadRequest, "%s must be %s", typeErr.Field, paramTypes[typeErr.Field])
	default:
		return nil, badRequest(http.StatusBadRequest, "the request body must be a JSON object with a query (a string) and optionally operationName, variables and extensions")
	}
}

// documentErrorStatus is the status of a request whose operation could not
// be prepared: 400 for BAD_REQUEST, 404 for PERSISTED_QUERY_NOT_FOUND;
// for the document's own errors (parse, validation, complexity), 200 under
// application/json and 400 under application/graphql-response+json.
func documentErrorStatus(errs gqlerror.List, media string) int {
	code, _ := errs[0].Extensions["code"].(string)
	switch {
	case code == string(models.BadRequest):
		return http.StatusBadRequest
	case code == string(models.PersistedQueryNotFound):
		return http.StatusNotFound
	case media == mediaGraphQLResponse:
		return http.StatusBadRequest
	default:
		return http.StatusOK
	}
}

// operationRefusal refuses what HTTP does not run: a mutation over GET
// (405, as the specification says: GET must be safe) and a subscription
// (which would hold the request open until its first event; subscriptions
// use a WebSocket or an event stream, graphQLOverSSE).
func operationRefusal(method string, op ast.Operation) *requestError {
	switch {
	case op == ast.Subscription:
		return badRequest(http.StatusBadRequest, "subscriptions run over a WebSocket at this endpoint (graphql-transport-ws), or over Server-Sent Events (Accept: text/event-stream), not over plain HTTP")
	case method == http.MethodGet && op != ast.Query:
		refused := badRequest(http.StatusMethodNotAllowed, "GET runs queries only: send a %s with POST", op)
		refused.allow = "POST"
		return refused
	}
	return nil
}
