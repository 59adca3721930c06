"""The stock client's real message, over SSH, into the real xymond."""

from conftest import DATA, HOST1_SECTION


def test_real_client_message_reaches_xymond_and_reply_comes_back(
        deployment):
    device = deployment.add_device('host1.example.com')
    message = (DATA / 'client-linux.txt').read_bytes()

    result = device.send('127.0.0.1', '@', stdin=message)

    assert result.returncode == 0, result.stderr
    assert result.stdout == HOST1_SECTION
    assert result.stderr == b''
    assert deployment.tap.wait_for(1) == [message]
    columns = deployment.xymond.wait_for_columns(
        'host1.example.com', {'cpu', 'disk', 'memory'})
    assert {'cpu', 'disk', 'memory'} <= columns
