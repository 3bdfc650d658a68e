// A client process with an offline store, for the Kotlin scenario's offline
// test (ScenarioTest.kt), which kills it. Arguments: URL TOKEN USER STORE
// CONVERSATION SEND PREFIX. Prints `cached N` (conversations in the cache
// before any network), `sent CLIENT_ID` per message of an earlier run
// acknowledged now, `acked SEQ` per message of its own, then `drained` once
// nothing waits in the store, and exits. With SEND 0 it first waits to be
// connected.

import io.mkondo.sdk.*
import kotlinx.coroutines.*

class SentPrinter : EventListener {
    override fun onEvent(event: ClientEvent) {
        if (event is ClientEvent.Sent) println("sent ${event.clientId}")
    }
}

// The changes waiting in the store file (the JVM here has no SQLite driver:
// Python's sqlite3 reads it).
fun outboxCount(path: String): Int {
    val p = ProcessBuilder(
        "python3", "-c",
        "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM outbox').fetchone()[0])",
        path,
    ).redirectErrorStream(true).start()
    val out = p.inputStream.bufferedReader().readText().trim()
    check(p.waitFor() == 0) { "reading the store failed: $out" }
    return out.toInt()
}

fun main(args: Array<String>) = runBlocking {
    val (url, token, user, store, conversation) = args
    val send = args[5].toInt()
    val prefix = args[6]
    val config = ClientConfig(
        url = url, token = token, storePath = store, storeUserId = user,
        minReconnectDelayMs = 50u, maxReconnectDelayMs = 300u,
    )
    val client = Client(config, SentPrinter(), null)
    println("cached ${client.cachedConversations().size}")
    client.connect()
    if (send == 0) client.waitForState(ConnectionState.CONNECTED, 10_000u)
    val calls = (0 until send).map { i -> async { client.sendText(conversation, "$prefix $i") } }
    for (call in calls) println("acked ${call.await().seq}")
    while (outboxCount(store) > 0) delay(20)
    println("drained")
    client.shutdown()
}
