"""``openhelix view``: a live 3D view of a running graph (or a recorded bag) in the browser, on viser.

core.py keeps the newest of everything and decides what to redraw when, without ROS or a browser;
robot.py poses the arm's URDF meshes; scene.py draws a frame into viser; node.py is the ROS subscriber;
replay.py feeds a bag through the same path; browser.py drives headless Chromium for screenshots.
"""
