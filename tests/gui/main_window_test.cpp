// SPDX-License-Identifier: MIT
// (being written)
#include <QTest>
class MainWindowTest : public QObject
{
    Q_OBJECT
};
QTEST_MAIN(MainWindowTest)
#include "main_window_test.moc"
