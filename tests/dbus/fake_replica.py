"""A stand-in for one prom daemon on D-Bus: owns org.prom.Prom1.Replica_ID on the session bus
and answers Properties.GetAll with the JSON given on the command line, so that promctl can be
tested against properties a real daemon would rarely produce (escape sequences from the store,
two actives) and against a frozen daemon (SIGSTOP this process). Prints "ready" once named."""
import json
import sys

sys.path.append("/usr/lib/python3/dist-packages")  # Debian's python3-dbus and python3-gi
import dbus  # noqa: E402
import dbus.service  # noqa: E402
from dbus.mainloop.glib import DBusGMainLoop  # noqa: E402
from gi.repository import GLib  # noqa: E402

IFACE = "org.prom.Prom1.Replica"
TYPES = {"FencingToken": dbus.UInt64, "LastTransitionUSec": dbus.UInt64, "LastErrorUSec": dbus.UInt64,
         "StoreHealthy": dbus.Boolean, "Paused": dbus.Boolean}


class Replica(dbus.service.Object):
    def __init__(self, bus, props):
        super().__init__(bus, "/org/prom/Prom1")
        self.props = {k: TYPES.get(k, dbus.String)(v) for k, v in props.items()}

    @dbus.service.method("org.freedesktop.DBus.Properties", in_signature="s", out_signature="a{sv}")
    def GetAll(self, interface):
        return self.props if interface == IFACE else {}


DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()
replica_id, props = sys.argv[1], json.loads(sys.argv[2])
name = dbus.service.BusName("org.prom.Prom1.Replica_" + replica_id, bus)
obj = Replica(bus, props)
print("ready", flush=True)
GLib.MainLoop().run()
