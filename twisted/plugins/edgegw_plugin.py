from twisted.application.service import ServiceMaker

edgegw = ServiceMaker(
    "edgegw",
    "edgegw_tx.tap",
    "API gateway that compiles and runs HTTP handlers written in Rust.",
    "edgegw",
)
