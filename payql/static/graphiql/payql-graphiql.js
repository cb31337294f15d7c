// payql's own start-up script for the vendored GraphiQL (payql/graphiql.py serves it; not from npm).
// It reads its settings from the page's JSON block, builds the fetcher and renders GraphiQL into #graphiql.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("payql-graphiql-config").textContent);
  var options = { url: new URL(config.url, window.location.href).href };
  if (config.subscriptionPath) {
    // the hook for a websocket route: graphql-ws (bundled in graphiql.min.js) needs an absolute ws:// URL
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

  function fetcher(params, opts) {
    return send(params, Object.assign({}, opts, { headers: withoutPlaceholders(opts && opts.headers) }));
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
