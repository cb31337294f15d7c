// payql's own start-up script for the vendored GraphiQL (payql/graphiql.py serves it; not from npm).
// It reads its settings from the page's JSON block, builds the fetcher and renders GraphiQL into #graphiql.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("payql-graphiql-config").textContent);
  var options = { url: new URL(config.url, window.location.href).href };
  if (config.subscriptionPath) {
    // subscriptions go over the websocket route with graphql-ws (bundled in graphiql.min.js), which needs an
    // absolute ws:// URL; GraphiQL's fetcher puts the headers it is given (the editor's, placeholders dropped
    // below) into connection_init's payload, where payql reads the token
    var ws = new URL(config.subscriptionPath, window.location.href);
    ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
    options.subscriptionUrl = ws.href;
  }
  var send = GraphiQL.createFetcher(options);

  // A header still holding the hint's <placeholder> is not a credential: drop it rather than send it.
  function withoutPlaceholders(headers) {
    var kept = {};
    Object.keys(headers || {}).forEach(function (name) {
      if (!/<[^>]*>/.test(String(headers[name]))) {
        kept[name] = headers[name];
      }
    });
    return kept;
  }

  // GraphiQL decides between POST and the websocket from `documentAST`, which its editor parses after a pause in
  // typing; parse the query being sent instead, so a subscription run at once still goes over the websocket.
  function documentOf(query, known) {
    try {
      return GraphiQL.GraphQL.parse(query);
    } catch (error) {
      return known;
    }
  }

  function fetcher(params, opts) {
    return send(
      params,
      Object.assign({}, opts, {
        headers: withoutPlaceholders(opts && opts.headers),
        documentAST: documentOf(params.query, opts && opts.documentAST),
      })
    );
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: config.defaultQuery,
      defaultHeaders: config.defaultHeaders,
      defaultEditorToolsVisibility: "headers",
      shouldPersistHeaders: false,
    })
  );
})();
