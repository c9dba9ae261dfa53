/*
 * A reference statsd config.js, in the style of its exampleConfig.js.
 * statsyard loads it as it is:
 *
 *   statsyard --statsd-config statsd-config.js
 *
 * See "--statsd-config" in docs/configuration.md for what each key maps to.
 */
{
  graphitePort: 2003
, graphiteHost: "graphite.example.com"
, graphiteProtocol: 'text'
, servers: [
    { server: './servers/udp', address: '0.0.0.0', port: 8125 }
  , { server: './servers/tcp', address: '0.0.0.0', port: 8125 }
  ]
, backends: [ "./backends/graphite", "./backends/console" ]
, flushInterval: 10000
, percentThreshold: [ 90, 99 ]
, histogram: [ { metric: 'render', bins: [ 0.01, 0.1, 1, 10, 'inf' ] } ]
, deleteIdleStats: false
, prefixStats: 'statsd'
, graphite: {
    legacyNamespace: true,
    globalPrefix: "stats",
  }
  // The management console is not implemented by statsyard: this key is
  // named in a warning at start and otherwise ignored.
, mgmt_port: 8126
}
