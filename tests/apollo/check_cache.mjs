// Run by tests/e2e/test_apollo_cache.py: README's Apollo typePolicies against a live payql.
//
//   node check_cache.mjs <snippet.mjs> <graphql url> <token> <payment id>
//
// <snippet.mjs> is README's snippet, exactly as written there, which exports `cache`. The same payment, package and
// balances are read twice through Apollo Client with two selections of their Money fields ({ amount currency },
// then { amount }): first with a bare InMemoryCache, which must warn "Cache data may be lost" (so that the check
// below can see a warning at all), then with README's cache, which must not warn and must hold both selections
// merged. One JSON line reports what was seen; the exit status is 0 only when every check held.
//
// Run it as an SPA runs in development: `node --conditions=development` (Apollo's development build, the one that
// warns), with Apollo's messages loaded (else a warning is a code and a link).
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { loadDevMessages, loadErrorMessages } from "@apollo/client/dev";
import { pathToFileURL } from "node:url";
import { format } from "node:util";

loadDevMessages();
loadErrorMessages();

const [snippetPath, url, token, paymentId] = process.argv.slice(2);

const FULL = gql`
  query Full($id: ID!) {
    payment(id: $id) { id status amount { amount currency } capturedAmount { amount currency } }
    packages { id code price { amount currency } }
    balances { id credits accounts { id currency available { amount currency } pending { amount currency } } }
  }
`;
const PARTIAL = gql`
  query Partial($id: ID!) {
    payment(id: $id) { id amount { amount } capturedAmount { amount } }
    packages { id price { amount } }
    balances { id accounts { id available { amount } pending { amount } } }
  }
`;

const warnings = [];
for (const level of ["warn", "error", "info", "debug"]) {
  const original = console[level];
  console[level] = (...args) => {
    warnings.push(format(...args)); // as the console prints it, %s filled in
    original.apply(console, args);
  };
}

async function readTwice(cache) {
  warnings.length = 0;
  const client = new ApolloClient({
    cache,
    link: new HttpLink({ uri: url, headers: { Authorization: `Bearer ${token}` } }),
  });
  const variables = { id: paymentId };
  const full = await client.query({ query: FULL, variables, fetchPolicy: "network-only" });
  const partial = await client.query({ query: PARTIAL, variables, fetchPolicy: "network-only" });
  const cached = client.readQuery({ query: FULL, variables });
  return {
    warnings: warnings.filter((line) => line.includes("Cache data may be lost")),
    full: full.data,
    partial: partial.data,
    cached,
  };
}

const bare = await readTwice(new InMemoryCache());
const { cache } = await import(pathToFileURL(snippetPath).href);
if (!(cache instanceof InMemoryCache)) {
  throw new Error("README's snippet must export `cache`, an InMemoryCache");
}
const readme = await readTwice(cache);
const problems = [];
if (bare.warnings.length === 0) {
  problems.push("a bare InMemoryCache did not warn: this check cannot see Apollo's warnings");
}
if (readme.warnings.length > 0) {
  problems.push(`README's typePolicies still warn: ${readme.warnings.join(" | ")}`);
}
if (JSON.stringify(readme.cached) !== JSON.stringify(readme.full)) {
  problems.push("after both queries the cache does not hold the first selection, merged with the second");
}
console.log(JSON.stringify({ bare, readme, problems }));
process.exit(problems.length === 0 ? 0 : 1);
