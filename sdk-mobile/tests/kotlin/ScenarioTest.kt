// The mobile scenario (sdk-mobile/tests/scenarios.md) in Kotlin on the JVM,
// against the real server, through the generated `io.mkondo.sdk` bindings.
// A tiny runner (no JUnit on this machine): prints `N passed, N failed`.

import io.mkondo.sdk.*
import java.io.File
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.*
import kotlin.system.exitProcess

val binary: String = System.getenv("MKONDO_BIN") ?: "target/debug/mkondo"

fun run(vararg args: String): String {
    val p = ProcessBuilder(binary, *args).redirectError(ProcessBuilder.Redirect.DISCARD).start()
    val out = p.inputStream.bufferedReader().readText()
    check(p.waitFor() == 0) { "mkondo ${args.toList()} failed" }
    return out.trim()
}

// A test CA and a certificate for localhost and 127.0.0.1, made with openssl in
// `dir`; returns the CA's PEM.
fun makeCaAndCert(dir: File): String {
    fun openssl(vararg args: String) {
        val p = ProcessBuilder("openssl", *args).directory(dir)
            .redirectErrorStream(true).start()
        p.inputStream.readBytes()
        check(p.waitFor() == 0) { "openssl ${args.toList()} failed" }
    }
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Mkondo test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=localhost")
    File(dir, "ext.cnf").writeText(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n" +
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf")
    return File(dir, "ca.pem").readText()
}

class Server(tls: Boolean = false) {
    private val dir = java.nio.file.Files.createTempDirectory("mkondo-kt-").toFile()
    val caPem: String? = if (tls) makeCaAndCert(dir) else null
    private val tlsArgs = if (tls) listOf(
        "--tls-cert", File(dir, "cert.pem").path, "--tls-key", File(dir, "key.pem").path,
    ) else emptyList()
    private val db = File(dir, "mkondo.db").path
    val appId: String = Regex("\"app_id\":\"([^\"]+)\"")
        .find(run("app", "create", "--name", "kt", "--json", "--database", db))!!.groupValues[1]
    var addr = "127.0.0.1:0"
    private var proc: Process? = null
    val url get() = if (caPem != null) "https://localhost:${addr.substringAfterLast(':')}" else "http://$addr"

    init { start() }

    fun start() {
        val p = ProcessBuilder(listOf(binary, "serve", "--listen", addr, "--database", db) + tlsArgs)
            .redirectError(ProcessBuilder.Redirect.DISCARD).start()
        val reader = p.inputStream.bufferedReader()
        while (true) {
            val line = reader.readLine() ?: error("the server did not start")
            val m = Regex("mkondo listening on (\\S+)").find(line)
            if (m != null) { addr = m.groupValues[1]; break }
        }
        Thread { reader.readLines() }.apply { isDaemon = true }.start()
        proc = p
    }

    fun stop() { proc?.destroy(); proc?.waitFor() }

    fun cli(vararg args: String) = run(*args, "--database", db)

    fun token(user: String, ttl: Int = 3600) =
        run("token", "--app", appId, "--user", user, "--ttl", ttl.toString(), "--database", db)
}

class Events : EventListener {
    val items = CopyOnWriteArrayList<ClientEvent>()
    val threads: MutableSet<Long> = java.util.concurrent.ConcurrentHashMap.newKeySet()
    override fun onEvent(event: ClientEvent) {
        threads.add(Thread.currentThread().id)
        items.add(event)
    }
    suspend fun waitFor(timeoutMs: Long = 10_000, pred: (ClientEvent) -> Boolean) {
        withTimeout(timeoutMs) { while (items.none(pred)) delay(20) }
    }
    fun texts(conv: String) = items.filterIsInstance<ClientEvent.MessageReceived>()
        .filter { it.message.conversationId == conv }.map { it.message.text }
}

fun config(s: Server, token: String?, transport: Transport = Transport.GRPC) = ClientConfig(
    url = s.url, token = token, transport = transport,
    minReconnectDelayMs = 50u, maxReconnectDelayMs = 300u, extraCaPem = s.caPem,
)

suspend fun connected(s: Server, user: String): Pair<Client, Events> {
    val events = Events()
    val client = Client(config(s, s.token(user)), events, null)
    client.connect()
    client.waitForState(ConnectionState.CONNECTED, 10_000u)
    return client to events
}

fun expect(cond: Boolean, what: String) { if (!cond) throw AssertionError(what) }

suspend fun twoClientsChat(s: Server) {
    val (alice, aEvents) = connected(s, "alice")
    val (bob, bEvents) = connected(s, "bob")
    val group = alice.createGroup(NewGroup(name = "team", members = listOf("bob")))
    val sub = bob.subscribe(group.id)
    expect(sub.snapshot() != null, "subscription snapshot")
    alice.subscribe(group.id)
    for (i in 0 until 5) alice.sendText(group.id, "m$i")
    bEvents.waitFor { it is ClientEvent.MessageReceived && it.message.text == "m4" }
    expect(bEvents.texts(group.id) == (0 until 5).map { "m$it" }, "messages in order, once")

    alice.typing(group.id)
    bEvents.waitFor { it is ClientEvent.Typing && it.userId == "alice" && it.typing }

    expect(bob.presence(listOf("alice"))[0].status == "online", "alice online")
    alice.setAppState(AppState.BACKGROUND)
    bEvents.waitFor { it is ClientEvent.PresenceChanged && it.presence.userId == "alice" && it.presence.status == "away" }
    alice.setAppState(AppState.FOREGROUND)

    val read = bob.markRead(group.id, 5u)
    expect(read.unreadCount == 0uL && read.lastReadSeq == 5uL, "read result")
    aEvents.waitFor { it is ClientEvent.ReadUpdated && it.userId == "bob" && it.lastReadSeq == 5uL }
    expect(Thread.currentThread().id !in bEvents.threads, "callbacks come from Rust threads")
    sub.cancel()
    alice.shutdown(); bob.shutdown()
}

suspend fun typedErrors(s: Server) {
    val (alice, _) = connected(s, "alice")
    try {
        alice.sendText("no-such-conversation", "hi"); throw AssertionError("no error")
    } catch (e: MkondoException.Server) {
        expect(e.code == "not_found" || e.code == "forbidden", "code ${e.code}")
    }
    try {
        alice.sendMessage(NewMessage(conversationId = "x", text = "t", data = "{nope"))
        throw AssertionError("no error")
    } catch (e: MkondoException.InvalidArgument) { }
    alice.shutdown()
    try { alice.ping(); throw AssertionError("no error") } catch (e: MkondoException.Cancelled) { }
}

suspend fun restartRecovered(s: Server) = coroutineScope {
    val (alice, _) = connected(s, "alice")
    val (bob, bEvents) = connected(s, "bob")
    val group = alice.createGroup(NewGroup(name = "r", members = listOf("bob")))
    alice.sendText(group.id, "before")
    bEvents.waitFor { it is ClientEvent.MessageReceived && it.message.text == "before" }
    s.stop()
    bEvents.waitFor { it is ClientEvent.StateChanged && it.new == ConnectionState.CONNECTING }
    val pending = (0 until 3).map { i -> async { alice.sendText(group.id, "offline$i") } }
    delay(200)
    s.start()
    val done = withTimeout(20_000) { pending.awaitAll() }
    expect(done.map { it.text } == listOf("offline0", "offline1", "offline2"), "outbox sent once, in order")
    bEvents.waitFor(20_000) { it is ClientEvent.MessageReceived && it.message.text == "offline2" }
    val want = listOf("before", "offline0", "offline1", "offline2")
    expect(bEvents.texts(group.id) == want, "no loss, no duplicate: ${bEvents.texts(group.id)}")
    expect(bob.history(group.id, null, null, 50u).messages.map { it.text } == want, "history")
    alice.shutdown(); bob.shutdown()
}

/** Records an upload's progress; cancels it once `cancelAfter` bytes left. */
class Progress(private val cancelAfter: ULong? = null) : UploadListener {
    val seen = CopyOnWriteArrayList<Pair<ULong, ULong>>()
    @Volatile var upload: Upload? = null
    override fun onProgress(sent: ULong, total: ULong) {
        seen.add(sent to total)
        if (cancelAfter != null && sent >= cancelAfter) upload?.cancel()
    }
}

/** Files over TLS: a photo from a path with its progress and the message
 * waiting for it; bytes cancelled mid-way fail the message waiting. */
suspend fun files(s: Server) {
    val (alice, _) = connected(s, "alice")
    val (bob, bEvents) = connected(s, "bob")
    val direct = alice.startDirect("bob")
    bob.subscribe(direct.id)
    val image = java.awt.image.BufferedImage(500, 300, java.awt.image.BufferedImage.TYPE_INT_RGB)
    for (x in 0 until 500) for (y in 0 until 300) image.setRGB(x, y, (x shl 16) or (y shl 8) or 90)
    val file = File.createTempFile("photo", ".png").apply { deleteOnExit() }
    javax.imageio.ImageIO.write(image, "png", file)

    val progress = Progress()
    val upload = alice.upload(
        NewUpload(direct.id, "photo.png", "image/png", FileSource.Path(file.path)), progress,
    )
    val id = upload.id()
    val sent = alice.sendMessage(NewMessage(conversationId = direct.id, text = "a photo", attachmentIds = listOf(id)))
    expect(upload.finished() == id && upload.sent() == file.length().toULong(), "uploaded whole")
    expect(progress.seen.last() == (file.length().toULong() to file.length().toULong()), "progress to the end")
    val a = sent.attachments.single()
    expect(a.id == id && a.width == 500u && a.height == 300u && a.thumbnail && a.blurhash.isNotEmpty(), "attachment $a")
    bEvents.waitFor { it is ClientEvent.MessageReceived && it.message.attachments == listOf(a) }
    val links = bob.attachmentUrls(direct.id, listOf(id))
    expect(links.urls.single().url.startsWith(s.url) && links.urls.single().thumbnailUrl.isNotEmpty(), "links")

    val cancelling = Progress(cancelAfter = 1uL)
    val big = alice.upload(
        NewUpload(direct.id, "big.bin", "application/octet-stream", FileSource.Bytes(ByteArray(24 shl 20))), cancelling,
    )
    cancelling.upload = big
    val bigId = big.id()
    try {
        alice.sendMessage(NewMessage(conversationId = direct.id, text = "never", attachmentIds = listOf(bigId)))
        throw AssertionError("no error")
    } catch (e: MkondoException.Cancelled) {
        expect(e.reason == "cancelled", "reason ${e.reason}")
    }
    expect(big.sent() < big.total(), "cancelled before the end")
    alice.shutdown(); bob.shutdown()
}

class Provider(private val s: Server) : TokenProvider {
    val calls = AtomicInteger()
    override fun fetchToken(): String = when (calls.incrementAndGet()) {
        1 -> s.token("carol", ttl = 2)
        2 -> throw TokenException.Failed("backend briefly down")
        else -> s.token("carol")
    }
}

suspend fun tokenRefresh(s: Server) {
    val provider = Provider(s)
    val client = Client(config(s, null), Events(), provider)
    client.connect()
    client.waitForState(ConnectionState.CONNECTED, 10_000u)
    withTimeout(20_000) { while (provider.calls.get() < 3) delay(50) }
    delay(2_500) // past the first token's expiry
    client.ping()
    expect(client.state() == ConnectionState.CONNECTED, "still connected")
    client.shutdown()
}

suspend fun concurrentCalls(s: Server) = coroutineScope {
    val (alice, _) = connected(s, "alice")
    val group = alice.createGroup(NewGroup(name = "c", members = emptyList()))
    val sent = (0 until 20).map { i -> async { alice.sendText(group.id, "c$i") } }.awaitAll()
    expect(sent.map { it.seq } == sent.map { it.seq }.sorted(), "calls leave in order")
    alice.shutdown()
}

// Over TLS, every transport, given only the test CA; without it, or by a wrong
// name, no connection and a Failed event naming the certificate's fault.
suspend fun chatOverTls(plain: Server) {
    val s = Server(tls = true)
    try {
        for (transport in Transport.values()) {
            val alice = Client(config(s, s.token("alice"), transport), Events(), null)
            val bobEvents = Events()
            val bob = Client(config(s, s.token("bob"), transport), bobEvents, null)
            for (c in listOf(alice, bob)) {
                c.connect()
                c.waitForState(ConnectionState.CONNECTED, 10_000u)
            }
            val direct = alice.startDirect("bob")
            alice.sendText(direct.id, "over TLS $transport")
            bobEvents.waitFor { it is ClientEvent.MessageReceived && it.message.text == "over TLS $transport" }
            alice.disconnect(); bob.disconnect()
        }
        // Without the CA, or calling the server by a name its certificate does
        // not carry (it names localhost only): never connected, and told why.
        val port = s.url.substringAfterLast(':')
        for ((cfg, why) in listOf(
            config(s, s.token("eve")).copy(extraCaPem = null) to "UnknownIssuer",
            config(s, s.token("eve")).copy(url = "https://127.0.0.1:$port") to "not valid for name",
        )) {
            val events = Events()
            val refused = Client(cfg, events, null)
            refused.connect()
            events.waitFor { it is ClientEvent.Failed }
            val failed = events.items.filterIsInstance<ClientEvent.Failed>().first()
            expect(failed.code == "unavailable" && "certificate" in failed.detail && why in failed.detail,
                "refused with the reason ($why): $failed")
            expect(refused.state() == ConnectionState.CONNECTING, "a refused attempt stays connecting")
            val connected = runCatching { refused.waitForState(ConnectionState.CONNECTED, 500u) }
            expect(connected.isFailure, "a refused client must not connect")
            refused.disconnect()
        }
    } finally {
        s.stop()
    }
}

suspend fun pushDevices(s: Server) {
    val (phone, _) = connected(s, "alice")
    val (laptop, _) = connected(s, "alice")
    val group = phone.createGroup(NewGroup(name = "team", members = emptyList()))
    val fcm = PushCredential.Fcm(token = "kt-fcm-token")
    val device = phone.registerDevice(fcm)
    expect(device.id.startsWith("dev_") && device.provider == "fcm", "registered: $device")
    expect(phone.registerDevice(fcm).id == device.id, "a rotated credential stays one device")
    phone.registerDevice(PushCredential.Apns(token = "0f".repeat(32), topic = "com.example.chat", sandbox = true))
    expect(laptop.devices().map { it.provider }.sorted() == listOf("apns", "fcm"), "both listed")
    try {
        phone.registerDevice(PushCredential.WebPush(endpoint = "http://127.0.0.1/push", p256dh = "x", auth = "y"))
        throw AssertionError("no error")
    } catch (e: MkondoException.Server) { expect(e.code == "invalid_argument", "code ${e.code}") }
    // A call invitation reaches the server through the binding: a callee who
    // is not in the conversation is refused like any signal.
    try {
        phone.ring(group.id, "nobody", "{\"type\":\"offer\"}")
        throw AssertionError("no error")
    } catch (e: MkondoException.Server) { expect(e.code == "not_found", "code ${e.code}") }
    expect(phone.mute(group.id, true).muted, "muted")
    val until = System.currentTimeMillis() + 3_600_000
    expect(phone.setDoNotDisturb(until) == until, "do not disturb set")
    expect(phone.setDoNotDisturb(null) == null, "do not disturb off")
    phone.signOut()
    expect(laptop.devices().isEmpty(), "sign-out removed the phone's devices")
    try { phone.ping(); throw AssertionError("no error") } catch (e: MkondoException.Cancelled) { }
    laptop.shutdown()
}

suspend fun peopleAndGroups(s: Server) {
    val (alice, aEvents) = connected(s, "alice")
    val (bob, bEvents) = connected(s, "bob")
    val (carol, _) = connected(s, "carol")
    expect(alice.sessionId().isNotEmpty(), "a session id")
    val group = alice.createGroup(NewGroup(name = "team", members = listOf("bob")))
    expect(alice.cachedConversation(group.id)?.id == group.id, "cached conversation")

    // Several listeners, each removable.
    val second = Events()
    val third = Events()
    val secondId = alice.addListener(second)
    val thirdId = alice.addListener(third)
    expect(alice.removeListener(thirdId) && !alice.removeListener(thirdId), "removed once")
    bob.sendText(group.id, "hello")
    for (e in listOf(aEvents, second)) {
        e.waitFor { it is ClientEvent.MessageReceived && it.message.text == "hello" }
    }
    expect(third.items.isEmpty(), "a removed listener hears nothing")
    expect(alice.removeListener(secondId), "second removed")

    val page = alice.members(group.id, null, 1u)
    expect(page.members.map { Triple(it.userId, it.role, it.user?.id) } == listOf(Triple("alice", "owner", "alice")),
        "first page: $page")
    val rest = bob.members(group.id, page.nextCursor, null)
    expect(rest.members.map { it.userId } == listOf("bob") && rest.nextCursor == null, "last page")
    expect(bob.users(listOf("alice", "carol")).users.map { it.id } == listOf("alice"), "a stranger is left out")
    try {
        carol.members(group.id, null, null); throw AssertionError("no error")
    } catch (e: MkondoException.Server) { expect(e.code == "not_found" && !e.temporary, "code ${e.code}") }

    val me = alice.updateProfile(ProfileUpdate(name = "Alice A."))
    expect(me.name == "Alice A." && alice.user()?.name == "Alice A.", "profile")
    try {
        alice.updateProfile(ProfileUpdate(data = "{nope")); throw AssertionError("no error")
    } catch (e: MkondoException.InvalidArgument) {
        expect(e.code == "invalid_argument" && !e.temporary, "typed: ${e.code}")
    }
    try {
        bob.updateConversation(group.id, ConversationUpdate(name = "x")); throw AssertionError("no error")
    } catch (e: MkondoException.Server) { expect(e.code == "permission_denied", "code ${e.code}") }
    expect(alice.setRole(group.id, "bob", Role.ADMIN).role == "admin", "made admin")
    expect(bob.updateConversation(group.id, ConversationUpdate(name = "crew")).name == "crew", "renamed")

    try {
        alice.searchUsers("car", null); throw AssertionError("no error")
    } catch (e: MkondoException.Server) { expect(e.code == "permission_denied", "directory off") }
    s.cli("app", "update", "--app", s.appId, "--user-directory", "true")
    expect(alice.searchUsers("CAR", null).map { it.id } == listOf("carol"), "directory on")

    alice.block("carol")
    expect(alice.blocks(null, null).blocks.map { it.userId } == listOf("carol"), "blocks")
    val before = bob.unreadTotal()
    alice.sendText(group.id, "count me")
    expect(bob.unreadTotal() == before + 1uL, "unread total")
    expect(bob.totalUnread() >= 0uL, "cached total")

    // A refused subscription: the call's error, and the event's, typed alike.
    try {
        bob.subscribe("no-such-conversation"); throw AssertionError("no error")
    } catch (e: MkondoException.Server) { expect(e.code == "not_found", "code ${e.code}") }
    bEvents.waitFor { it is ClientEvent.SubscriptionChanged && it.conversationId == "no-such-conversation" && it.error != null }
    val failure = bEvents.items.filterIsInstance<ClientEvent.SubscriptionChanged>().first { it.error != null }.error
    expect(failure is MkondoException.Server && failure.code == "not_found" && !failure.temporary, "typed: $failure")

    val sub = bob.subscribe(group.id)
    bob.unsubscribe(group.id)
    expect(bob.subscriptionState(group.id) == SubscriptionState.UNSUBSCRIBED, "unsubscribed")
    sub.close()

    try { bob.deleteConversation(group.id); throw AssertionError("no error") } catch (e: MkondoException.Server) { }
    alice.deleteConversation(group.id)
    try {
        bob.members(group.id, null, null); throw AssertionError("no error")
    } catch (e: MkondoException.Server) { expect(e.code == "not_found", "deleted") }
    alice.shutdown(); bob.shutdown(); carol.shutdown()
}

fun offlineClient(s: Server, path: String, conversation: String, send: Int, prefix: String): Process =
    ProcessBuilder(
        "java", "-Djna.library.path=${System.getProperty("jna.library.path")}",
        "-cp", System.getProperty("java.class.path"), "OfflineClientKt",
        s.url, s.token("alice"), "alice", path, conversation, send.toString(), prefix,
    ).redirectError(ProcessBuilder.Redirect.INHERIT).start()

// The offline store across processes: a new process opens with the cache
// before any network; messages written while the server is down survive the
// process being killed and land once, in order, reported as `Sent` events.
suspend fun offlineAcrossProcesses(s: Server) {
    val (bob, _) = connected(s, "bob")
    val (alice, _) = connected(s, "alice")
    alice.shutdown()
    val group = bob.createGroup(NewGroup(name = "team", members = listOf("alice")))
    bob.sendText(group.id, "before")
    val path = java.nio.file.Files.createTempDirectory("mkondo-kt-store-").resolve("alice.db").toString()

    val first = offlineClient(s, path, group.id, 0, "none")
    val firstLines = first.inputStream.bufferedReader().readLines()
    expect(first.waitFor() == 0 && firstLines == listOf("cached 0", "drained"), "first run: $firstLines")

    s.stop()
    val offline = offlineClient(s, path, group.id, 3, "offline")
    val reader = offline.inputStream.bufferedReader()
    expect(reader.readLine() == "cached 1", "the cache before any network")
    withTimeout(10_000) { while (outboxCount(path) < 3) delay(20) }
    offline.destroyForcibly().waitFor()

    s.start()
    bob.waitForState(ConnectionState.CONNECTED, 10_000u)
    val last = offlineClient(s, path, group.id, 0, "none")
    val lines = last.inputStream.bufferedReader().readLines()
    expect(last.waitFor() == 0, "the last run ended: $lines")
    expect(lines.first() == "cached 1" && lines.last() == "drained", "$lines")
    expect(lines.count { it.startsWith("sent ") } == 3, "each stored message reported once: $lines")
    val texts = bob.history(group.id, null, null, 50u).messages.filter { it.kind == "user" }.map { it.text }
    expect(texts == listOf("before", "offline 0", "offline 1", "offline 2"), "once, in order: $texts")
    expect(outboxCount(path) == 0, "the store's outbox is empty")
    bob.shutdown()
}

fun main() {
    val tests = listOf(
        "chat over TLS given only the CA" to ::chatOverTls,
        "two clients chat, typing, presence, read" to ::twoClientsChat,
        "typed errors" to ::typedErrors,
        "server restart recovered" to ::restartRecovered,
        "token refresh through a Kotlin provider" to ::tokenRefresh,
        "concurrent calls" to ::concurrentCalls,
        "push devices, mute, do not disturb, sign-out" to ::pushDevices,
        "people, groups, listeners and typed errors" to ::peopleAndGroups,
        "offline store across killed processes" to ::offlineAcrossProcesses,
        "files: upload with progress, cancel" to ::files,
    )
    var passed = 0
    var failed = 0
    for ((name, test) in tests) {
        val server = Server()
        try {
            runBlocking { withTimeout(60_000) { test(server) } }
            println("ok   $name"); passed++
        } catch (e: Throwable) {
            println("FAIL $name: $e"); failed++
        } finally {
            server.stop()
        }
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
