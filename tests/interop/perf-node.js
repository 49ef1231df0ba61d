// One hyperdht@1.3.0 node on 127.0.0.1 for perf-report's load: no bootstrap, no event
// recording (so that its memory is the node's own). Prints {"address": "127.0.0.1:PORT"}
// once ready; ends by itself after SECS.
//
// usage: node perf-node.js [PORT] [SECS]
'use strict'

const dgram = require('dgram')
const hyperdht = require('hyperdht')

const port = Number(process.argv[2] || 0)
const secs = Number(process.argv[3] || 600)
setTimeout(() => process.exit(0), secs * 1000).unref()

const socket = dgram.createSocket('udp4')
const node = hyperdht({ bootstrap: [], ephemeral: false, socket })
node.dht.on('warning', () => {})
socket.bind(port, '127.0.0.1')
node.ready(() => {
  process.stdout.write(JSON.stringify({ address: '127.0.0.1:' + node.address().port }) + '\n')
})
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
