"""Fakes of the project's outside parties (CONTRACTS.md §1 callback, §2, §3, §4) on real sockets.

- qingjian.FakeQingjian: 轻简 WebSocket connector (customers speak, sends are recorded)
- tianwang.FakeTianwang: 天网 callback receiver
- tuhui.FakeTuhui: 图绘 dispatch API
- wecom.FakeWecom: 企业微信 group robot

Each also runs on its own: `python -m devkit.fakes.<name> --help`.
"""
