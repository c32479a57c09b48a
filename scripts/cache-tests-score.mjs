// Scores one run of the HTTP caching conformance suite (http-cache-tests) the way cache-tests.fyi shows
// it, next to the reverse proxies whose published results ship with the package, and checks the targets.
//
//   node scripts/cache-tests-score.mjs <package dir> <our results.json> <min required> <min optimal>
//
// Only tests that apply to a proxy are counted (not `browser_only`); a test whose dependency failed does
// not count as passed, as on cache-tests.fyi. Exits 1 below a target.
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [pkg, ours, minRequired, minOptimal] = process.argv.slice(2)
const load = file => import(pathToFileURL(path.join(pkg, file)).href)
const suites = (await load('tests/index.mjs')).default
suites.push((await load('tests/surrogate-control.mjs')).default)
const display = await load('lib/display.mjs')
const published = (await load('results/index.mjs')).default

function score (results) {
  const counts = { required: [0, 0], optimal: [0, 0], check: [0, 0] }
  for (const suite of suites) {
    for (const test of suite.tests) {
      if (test.browser_only === true) continue
      const kind = test.kind || 'required'
      const verdict = display.determineTestResult(suites, test.id, results, true)
      counts[kind][1]++
      if (verdict[2] === '✅' || verdict[2] === 'Y') counts[kind][0]++
    }
  }
  return counts
}

const rows = [['edge (this run)', score(JSON.parse(fs.readFileSync(ours, 'utf8')))]]
for (const entry of published) {
  if (entry.type && entry.type !== 'rev-proxy' && entry.type !== 'cdn') continue
  const file = path.join(pkg, 'results', entry.file)
  if (!fs.existsSync(file)) continue
  rows.push([`${entry.name}${entry.version ? ' ' + entry.version : ''}`, score(JSON.parse(fs.readFileSync(file, 'utf8')))])
}
const cell = ([passed, total]) => `${passed}/${total}`
console.log('| cache | required | optimal | check (yes) |')
console.log('|---|---|---|---|')
for (const [name, c] of rows) {
  console.log(`| ${name} | ${cell(c.required)} | ${cell(c.optimal)} | ${cell(c.check)} |`)
}
const mine = rows[0][1]
const failures = []
if (mine.required[0] < Number(minRequired)) failures.push(`required ${mine.required[0]} < ${minRequired}`)
if (mine.optimal[0] < Number(minOptimal)) failures.push(`optimal ${mine.optimal[0]} < ${minOptimal}`)
if (failures.length) {
  console.error(`cache-tests: below target: ${failures.join(', ')}`)
  process.exit(1)
}
