"""The live rig: real parts on this machine for the tests, the demo and the benchmarks that run daemons.

    ports    free loopback ports, waiting for a listener, stopping a child process; RigError
    broker   Mosquitto on a free loopback port: anonymous or password + ACL, TLS, persistence, kill/pause
    mqtt     a subscriber that records (and timestamps) every message on its topics
    daemon   a daemon config written as TOML from dicts, and `edge-audio run` as a child process
    mic      ALSA capture devices (the `file` plugin) reading a raw file or a FIFO
    sshd     OpenSSH "devices" on loopback ports, with the client files that reach them
    streamserver  ffmpeg serving a recording over HTTP on a free loopback port: a camera's stream for the url source
"""
